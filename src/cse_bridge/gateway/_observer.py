"""
The outermost HTTP middleware: what every request does for operations.

It counts the request in flight (so a drain can wait for it), tells the connection
guard that a request arrived (its first-request deadline is met) and which answers
refused one, asks the client to close its keep-alive connection while draining (so it
reconnects to a gateway that stays), counts the answer for /metrics and writes the
optional access log line. Outermost, so it sees the status the client gets, error
envelopes included. One middleware for all of it: each layer of aiohttp middleware
costs every request a coroutine and a call.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ._access_log import AccessLog
from ._drain import Drain
from ._http_guard import HttpGuard
from ._metrics import GatewayMetrics

__all__ = ["observe_requests"]

_UNMATCHED = "unmatched"
"""The ``route`` label of requests no route matched (a 404 or 405)."""


def observe_requests(
    metrics: GatewayMetrics,
    drain: Drain,
    access_log: AccessLog | None,
    guard: HttpGuard,
) -> Middleware:
    """Return the middleware; *access_log* None writes no access log."""

    def note(
        request: web.Request, response: web.StreamResponse, started: float
    ) -> None:
        duration = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = _UNMATCHED if resource is None else resource.canonical
        status = response.status
        metrics.count_request(route, request.method, status, duration)
        guard.answered(status)
        if access_log is not None:
            access_log.record(
                request, response.status, response.content_length, duration
            )

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        drain.enter()
        guard.request_started(request)
        # A request the client abandoned (cancelled) is not counted: it got no answer.
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect: the envelope passes those on
            note(request, exc, started)
            raise
        finally:
            drain.leave()
        note(request, response, started)
        if drain.draining:
            response.force_close()  # its next request goes to another gateway
        return response

    return observe

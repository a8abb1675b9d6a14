"""
``RequestObserver``: what every HTTP request does for operations, around each handler.

It counts the request in flight (so a drain can wait for it), tells the connection
guard that a request arrived (its first-request deadline is met) and which answers
refused one, turns what a handler raises into the error envelope, asks the client to
close its keep-alive connection while draining (so it reconnects to a gateway that
stays), counts the answer for /metrics and writes the optional access log line.

Each handler is wrapped once, when its route is added, rather than run through aiohttp
middlewares: a middleware layer costs every request a partial call and a coroutine,
and any middleware at all adds aiohttp's own layer too. Requests no route matches are
resolved to one fallback route, wrapped the same way, that answers aiohttp's 404 or
405.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ._access_log import AccessLog
from ._drain import Drain
from ._http_guard import HttpGuard
from ._metrics import GatewayMetrics

__all__ = ["ErrorAnswer", "RequestObserver"]

ErrorAnswer = Callable[[web.Request, Exception], web.Response]
"""Turns an exception a handler raised into the error envelope (``error_answers``)."""

_UNMATCHED = "unmatched"
"""The ``route`` label of requests no route matched (a 404 or 405)."""


class RequestObserver:
    """
    Wraps handlers so that each request is counted, enveloped, logged and drained.

    Args:
        metrics: Counts answers by route, method and status.
        drain: Counts requests in flight; while it drains, answers close.
        access_log: Writes one line per request; None writes none.
        guard: Told of each request and each refusing answer.
        answer_error: The error envelope of an exception a handler raised (a redirect,
            status < 400, is passed on instead).
    """

    def __init__(
        self,
        metrics: GatewayMetrics,
        drain: Drain,
        access_log: AccessLog | None,
        guard: HttpGuard,
        answer_error: ErrorAnswer,
    ) -> None:
        self._metrics = metrics
        self._drain = drain
        self._access_log = access_log
        self._guard = guard
        self._answer_error = answer_error

    def add_route(
        self, router: web.UrlDispatcher, method: str, path: str, handler: Handler
    ) -> None:
        """Add *handler* for *method* on *path*, observed (GET answers HEAD too)."""
        resource = router.add_resource(path)
        observed = self.wrap(handler, resource.canonical)
        if method == hdrs.METH_GET:
            resource.add_route(hdrs.METH_HEAD, observed)
        resource.add_route(method, observed)

    def add_catch_all(self, router: web.UrlDispatcher) -> None:
        """
        Answer, observed, the requests no route takes: 404, or 405 with Allow.

        Every request the router cannot match (any path, ``OPTIONS *``, ``CONNECT``,
        an absolute-form target without a path) resolves to one observed route, whose
        handler raises aiohttp's own answer for it. Add it after every other route.
        """
        resolve = router.resolve
        # Not in the router: only the resolver below hands it out.
        fallback = web.PlainResource("/", name=None)

        async def unmatched(request: web.Request) -> web.StreamResponse:
            # Resolved again (only for a miss): the 404, or the 405 naming the
            # methods the path allows.
            raise (await resolve(request)).http_exception or web.HTTPNotFound()

        route = fallback.add_route(hdrs.METH_ANY, self.wrap(unmatched, _UNMATCHED))

        async def resolve_observed(request: web.Request) -> web.UrlMappingMatchInfo:
            match = await resolve(request)
            if match.http_exception is None:
                return match
            return web.UrlMappingMatchInfo({}, route)

        # The router's resolver, per instance: aiohttp has no public hook for a miss
        # short of a middleware, which would cost every request.
        router.resolve = resolve_observed  # type: ignore[method-assign]  # per instance

    def wrap(self, handler: Handler, route: str) -> Handler:
        """Return *handler* observed; *route* is its ``route`` label in /metrics."""
        metrics, drain, guard = self._metrics, self._drain, self._guard
        access_log, answer_error = self._access_log, self._answer_error
        perf_counter = time.perf_counter

        def note(
            request: web.Request, response: web.StreamResponse, started: float
        ) -> None:
            duration = perf_counter() - started
            status = response.status
            metrics.count_request(route, request.method, status, duration)
            guard.answered(status)
            if access_log is not None:
                access_log.record(request, status, response.content_length, duration)

        async def observed(request: web.Request) -> web.StreamResponse:
            started = perf_counter()
            drain.enter()
            if guard.waiting:  # else every connection met its first deadline
                guard.request_started(request)
            # A request the client abandoned (cancelled) is not counted: it got no
            # answer.
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:  # noqa: PLR2004 - a redirect: passed on
                    note(request, exc, started)  # as below
                    raise
                response = answer_error(request, exc)
            except Exception as exc:
                response = answer_error(request, exc)
            finally:
                drain.leave()
            # note(), inline: one call fewer on every answer.
            duration = perf_counter() - started
            status = response.status
            metrics.count_request(route, request.method, status, duration)
            if status >= 400:  # noqa: PLR2004 - only errors can be refusals
                guard.answered(status)
            if access_log is not None:
                access_log.record(request, status, response.content_length, duration)
            if drain.draining:
                response.force_close()  # its next request goes to another gateway
            return response

        return observed

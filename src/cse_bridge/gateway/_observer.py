"""
``RequestObserver``: what every HTTP request does for operations, around each handler.

It counts the request in flight (so a drain can wait for it), tells the connection
guard that a request arrived (its first-request deadline is met) and which answers
refused one, turns what a handler raises into the error envelope, asks the client to
close its keep-alive connection while draining (so it reconnects to a gateway that
stays), counts the answer for /metrics and writes the optional access log line.

Each handler is wrapped once, when its route is added (``Routes.add``), rather than
run through a chain of middlewares, which would cost every request a call and a
coroutine per layer. The answer to a request no route takes is wrapped the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._access_log import AccessLog
from ._drain import Drain
from ._http_guard import HttpGuard
from ._metrics import GatewayMetrics

__all__ = ["ErrorAnswer", "Handler", "RequestObserver"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
"""What answers a request (aiohttp's low-level server hands it a ``BaseRequest``)."""
ErrorAnswer = Callable[[web.BaseRequest, Exception], web.Response]
"""Turns an exception a handler raised into the error envelope (``error_answers``)."""


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

    def wrap(self, handler: Handler, route: str) -> Handler:
        """Return *handler* observed; *route* is its ``route`` label in /metrics."""
        metrics, drain, guard = self._metrics, self._drain, self._guard
        access_log, answer_error = self._access_log, self._answer_error
        perf_counter = time.perf_counter

        def note(
            request: web.BaseRequest, response: web.StreamResponse, started: float
        ) -> None:
            duration = perf_counter() - started
            status = response.status
            metrics.count_request(route, request.method, status, duration)
            guard.answered(status)
            if access_log is not None:
                access_log.record(request, status, response.content_length, duration)

        async def observed(request: web.BaseRequest) -> web.StreamResponse:
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

"""
The gateway's events HTTP API: ``POST /events`` and ``GET /events/{id}``.

See docs/protocol.md#protocol-http.

Every answer is JSON: ``{"success": true, "data": ...}`` or ``{"success": false,
"error": "<message>"}``. Handlers answer the bad inputs they know about themselves;
``error_answers``, which the ``RequestObserver`` around each handler calls, turns
the refusals raised as aiohttp's exceptions (404, 405 and 417 by ``Routes``, 413 by
aiohttp) into the same envelope, a store that cannot be reached
(``StoreUnavailableError``) into 503 with ``Retry-After``, and anything unexpected
into a logged 500.

Speed matters here (the gateway is benchmarked against a bare aiohttp handler): no
validation layer, one JSON decode and one encode per stored event, and reads join the
event JSON the store encoded once at store time instead of re-encoding it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _quote
from typing import Final

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from ..errors import EventsAuthError, StoreUnavailableError
from ._auth import Authenticator
from ._limits import GatewayLimits
from ._observer import ErrorAnswer
from ._rate_limiter import RateLimiter
from ._routes import Routes, tail_segment
from ._validation import (
    RequestError,
    is_sandbox_id,
    parse_event_body,
    parse_event_query,
    push_overhead,
)
from .stores import Broker, EventStore

__all__ = ["add_events_routes", "body_limited_requests", "error_answers"]

logger = logging.getLogger(__name__)

RequestFactory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]
"""What makes ``web.Server``'s requests (its ``request_factory``)."""

_EVENTS_PREFIX: Final = "/events/"
"""``GET /events/{sandboxId}`` takes the one path segment after it."""
_JSON: Final = "application/json"
_JSON_HEADERS: Final = {hdrs.CONTENT_TYPE: f"{_JSON}; charset=utf-8"}
_MAX_ECHOED: Final = 200
"""Characters of the client's own text (a path, a header) an error message repeats."""
_RETRY_AFTER: Final = "1"
"""Seconds a client should wait after a 503 (the store reconnects by itself)."""
_UNAVAILABLE_LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about the store being unavailable."""


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """Return the error envelope ``{"success": false, "error": message}``."""
    return web.Response(
        text=f'{{"success":false,"error":{_quote(message)}}}',
        status=status,
        content_type=_JSON,
        headers=headers,
    )


def _bearer_token(header: str | None) -> str:
    """Return the token of an ``Authorization: Bearer <token>`` header."""
    if header is not None and header.startswith("Bearer "):  # the usual spelling
        return header[7:].strip()
    if header is None:
        raise EventsAuthError(
            "Missing access token: send 'Authorization: Bearer <token>'"
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise EventsAuthError("The Authorization header must be 'Bearer <token>'")
    return token.strip()


class _EventsApi:
    """The two handlers, bound to one gateway's store, broker, auth and limits."""

    __slots__ = (
        "_auth",
        "_broker",
        "_max_body",
        "_max_data",
        "_max_push",
        "_max_type",
        "_rate_limiter",
        "_store",
    )

    def __init__(
        self,
        store: EventStore,
        broker: Broker,
        auth: Authenticator,
        limits: GatewayLimits,
        rate_limiter: RateLimiter | None,
    ) -> None:
        self._store = store
        self._broker = broker
        self._auth = auth
        self._max_body = limits.max_body_bytes
        self._max_type = limits.max_type_length
        self._max_data = limits.max_data_bytes
        self._max_push = limits.max_push_bytes
        self._rate_limiter = rate_limiter

    def _too_large(self) -> web.Response:
        return error_response(
            413, f"Request body is larger than {self._max_body} bytes"
        )

    async def post_event(self, request: web.BaseRequest) -> web.Response:
        """``POST /events``: store one event for the sandbox the token names."""
        try:
            token = _bearer_token(request.headers.get(hdrs.AUTHORIZATION))
            claims = self._auth.verify_token(token)
        except EventsAuthError as exc:
            return error_response(401, exc.message)
        sandbox_id = claims.sandbox_id
        if not sandbox_id.isascii() and not is_sandbox_id(sandbox_id):
            return error_response(401, "Invalid access token: bad sandboxId claim")
        length = request.content_length
        if length is not None and length > self._max_body:
            return self._too_large()
        content = request.content
        if content.is_eof() and hdrs.CONTENT_ENCODING not in request.headers:
            # The whole body arrived with its head, as small ones do: take it as it
            # lies, without read()'s loop of coroutines (the size is checked below).
            body = content.read_nowait()
        else:
            try:
                # Enforces client_max_size while reading (chunked bodies too), and
                # decompresses a Content-Encoding a chunk at a time.
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._too_large()
        if len(body) > self._max_body:  # aiohttp >= 3.14 reads one byte more
            return self._too_large()
        if self._rate_limiter is not None:
            wait = self._rate_limiter.acquire((claims.workspace_id, sandbox_id))
            if wait > 0:
                return _rate_limited(wait, self._rate_limiter.rate)
        try:
            event_type, data_json = parse_event_body(
                body, max_type_length=self._max_type, max_data_bytes=self._max_data
            )
            if not (sandbox_id.isascii() and event_type.isascii()):
                # Escaped non-ASCII ids and types can outgrow the margin that
                # max_data_bytes leaves: the whole push must fit a subscriber.
                self._check_push_size(sandbox_id, event_type, data_json)
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        event = await self._store.append(
            (claims.workspace_id, sandbox_id), event_type, data_json
        )
        await self._broker.publish(event)
        # The body as bytes with its header ready is what Response(text=...,
        # content_type=...) would make, for less. The id is quoted too: a custom
        # EventStore may make ids of any text.
        return web.Response(
            body=(
                f'{{"success":true,"data":{{"eventId":{_quote(event.id)},'
                f'"sandboxId":{_quote(sandbox_id)},'
                f'"type":{_quote(event_type)},"timestamp":{event.timestamp}}}}}'
            ).encode(),
            headers=_JSON_HEADERS,
        )

    def _check_push_size(self, sandbox_id: str, event_type: str, data: str) -> None:
        room = self._max_push - push_overhead(sandbox_id, event_type)
        if len(data.encode()) > room:
            raise RequestError(
                f"'data' is larger than {room} bytes, the most that fits one pub/sub "
                "push with this sandbox id and type",
                status=413,
            )

    async def get_events(self, request: web.BaseRequest) -> web.Response:
        """``GET /events/{sandboxId}``: read a sandbox of the API key's workspace."""
        try:
            workspace_id = self._auth.workspace_for_api_key(
                request.headers.get("X-API-Key", "")
            )
        except EventsAuthError as exc:
            return error_response(401, exc.message)
        sandbox_id = tail_segment(request, _EVENTS_PREFIX)
        if sandbox_id is None:  # not this route's path: Routes never passes one
            raise web.HTTPNotFound()
        query = request.query
        try:
            params = parse_event_query(
                query.get("type"), query.get("since"), query.get("limit")
            )
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        if is_sandbox_id(sandbox_id):
            events = await self._store.query(
                (workspace_id, sandbox_id),
                event_type=params.event_type,
                since=params.since,
                limit=params.limit,
            )
        else:
            events = []  # no sandbox has such an id: answer as for any unknown one
        # The events are JSON already: join them, never decode and re-encode.
        return web.Response(
            text=(
                f'{{"success":true,"data":{{"sandboxId":{_quote(sandbox_id)},'
                f'"events":[{",".join([event.json for event in events])}],'
                f'"count":{len(events)}}}}}'
            ),
            content_type=_JSON,
        )


def _rate_limited(wait: float, rate: float) -> web.Response:
    return error_response(
        429,
        f"Rate limit exceeded: at most {rate:g} events per second per sandbox",
        headers={hdrs.RETRY_AFTER: str(max(1, math.ceil(wait)))},
    )


def _echoed(text: str) -> str:
    return text if len(text) <= _MAX_ECHOED else text[:_MAX_ECHOED] + "..."


def _describe(request: web.BaseRequest, exc: web.HTTPException) -> str:
    path = _echoed(request.path)
    if isinstance(exc, web.HTTPNotFound):
        return f"Not found: {request.method} {path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"Method {request.method} is not allowed on {path}; use {allowed}"
    if isinstance(exc, web.HTTPExpectationFailed):
        expect = _echoed(request.headers.get(hdrs.EXPECT, ""))
        return f"Unsupported Expect: {expect}; only 100-continue is"
    return exc.reason


def error_answers(limits: GatewayLimits) -> ErrorAnswer:
    """Return what turns an exception a handler raised into its error envelope."""
    unavailable_logged = [-_UNAVAILABLE_LOG_INTERVAL]

    def answer_error(request: web.BaseRequest, exc: Exception) -> web.Response:
        if isinstance(exc, web.HTTPException):
            if isinstance(exc, web.HTTPRequestEntityTooLarge):
                message = f"Request body is larger than {limits.max_body_bytes} bytes"
            else:
                message = _describe(request, exc)
            allow = exc.headers.get(hdrs.ALLOW)
            return error_response(
                exc.status,
                message,
                headers=None if allow is None else {hdrs.ALLOW: allow},
            )
        if isinstance(exc, StoreUnavailableError):
            # Redis down or failing over: a 503 the bridge retries, not a 500.
            # Logged once per interval: an outage must not flood the log.
            now = time.monotonic()
            if now - unavailable_logged[0] >= _UNAVAILABLE_LOG_INTERVAL:
                unavailable_logged[0] = now
                logger.warning("answering 503 while the store is down: %s", exc)
            return error_response(
                503, exc.message, headers={hdrs.RETRY_AFTER: _RETRY_AFTER}
            )
        logger.error(
            "unexpected error answering %s %s",
            request.method,
            request.path,
            exc_info=exc,
        )
        return error_response(500, "Internal server error")

    return answer_error


def add_events_routes(
    routes: Routes,
    store: EventStore,
    broker: Broker,
    auth: Authenticator,
    limits: GatewayLimits,
    *,
    rate_limiter: RateLimiter | None = None,
) -> None:
    """
    Serve the events API on *store* through *routes*.

    The caller serves *routes* on the loop the store and broker use, with requests
    from ``body_limited_requests``. With a *rate_limiter*, each sandbox's
    ``POST /events`` past its rate answers 429 with ``Retry-After``.
    """
    api = _EventsApi(store, broker, auth, limits, rate_limiter)
    routes.add(hdrs.METH_POST, "/events", api.post_event)
    routes.add(hdrs.METH_GET, _EVENTS_PREFIX + "{sandboxId}", api.get_events)


def body_limited_requests(
    loop: asyncio.AbstractEventLoop, limits: GatewayLimits
) -> RequestFactory:
    """
    Return the ``request_factory`` of the gateway's ``web.Server``.

    Its requests read at most one byte more than ``limits.max_body_bytes``: aiohttp
    < 3.14 refuses a body of exactly ``client_max_size``, newer ones only a longer
    one; ``post_event`` checks the rest.
    """
    client_max_size = limits.max_body_bytes + 1

    def make_request(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            loop,
            client_max_size=client_max_size,
        )

    return make_request

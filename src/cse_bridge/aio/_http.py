"""
``AsyncEventsClient``: the events HTTP client for asyncio, on aiohttp.

Same arguments, checks, errors and models as ``cse_bridge.client.EventsClient``
(docs/protocol.md#protocol-http): both build their requests and read their answers
with ``cse_bridge.client.protocol``; only the I/O differs.
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from .. import config
from ..client.protocol import (
    DEFAULT_POOL_SIZE,
    MAX_LIMIT,
    ClientSettings,
    check_page_size,
    decode_events,
    encode_event,
    events_query,
    fetch_headers,
    next_cursor,
    store_headers,
)
from ..errors import EventsAuthError
from ..models import SandboxEvent, StoreEventResult
from ._errors import Answer, request_data

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncEventsClient"]

_CHUNKED_ABOVE: Final = 1024 * 1024


class AsyncEventsClient(ClientSettings):
    """
    Stores and retrieves sandbox events over HTTP, for asyncio applications.

    The awaitable twin of ``EventsClient``: a sandbox stores events with its access
    token (``store_event``); an application reads them with its API key
    (``get_events``, ``iter_events``). Every argument falls back to its
    ``COMPUTESDK_*`` environment variable, then to the default; bad arguments raise
    here, before anything is sent.

    Each call waits for its answer without blocking the event loop, at most
    *timeout* seconds per connect and per socket read (as ``EventsClient``), and
    no call retries. Cancelling a call closes its connection (it is not reused).

    The aiohttp session, with a keep-alive pool of *pool_size* connections, is
    opened on the first request, in the running loop: use one client from one event
    loop; any number of tasks may share it. ``async with`` (or ``aclose()``) closes
    it; a client never used opens nothing.

    Args:
        gateway_url: Base URL; env ``COMPUTESDK_GATEWAY_URL``, else the public gateway.
        api_key: Key for reading events; env ``COMPUTESDK_API_KEY``.
        access_token: Sandbox JWT for storing events; env ``COMPUTESDK_ACCESS_TOKEN``.
        timeout: Seconds per connect and per read; default ``config.DEFAULT_TIMEOUT``.
        pool_size: Keep-alive connections kept to the gateway (and the most requests
            in flight at once: more wait for a free connection).
        ca_file: The CA bundle that verifies an ``https`` gateway's certificate;
            else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the system's.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument (or the environment value it falls back to) is invalid.
        ImportError: aiohttp is not installed (``pip install 'cse-bridge[aio]'``).
    """

    def __init__(
        self,
        *,
        gateway_url: str | None = None,
        api_key: str | None = None,
        access_token: str | None = None,
        timeout: float | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(
            gateway_url=gateway_url,
            api_key=api_key,
            access_token=access_token,
            timeout=timeout,
            pool_size=pool_size,
            ca_file=ca_file,
        )
        self._closed = False
        self._session: aiohttp.ClientSession | None = None

    async def store_event(
        self, type: str, data: Mapping[str, Any] | None = None
    ) -> StoreEventResult:
        """
        Store one event for the sandbox that the access token names.

        Args:
            type: The event type, e.g. ``EventType.EXECUTION_COMPLETED``.
            data: The event's JSON object; ``{}`` by default.

        Returns:
            The stored event's id, sandbox, type and timestamp.

        Raises:
            TypeError, ValueError: Bad arguments, as ``EventsClient.store_event``
                (nothing is sent).
            EventsAuthError: No access token is set (nothing is sent), or the
                gateway refused it.
            EventsNetworkError: Timeout or connection failure.
            EventsError: Any other error answer, or an invalid response.
        """
        body = encode_event(type, data)
        token = self._access_token
        if token is None:
            raise EventsAuthError(
                "Access token required to store events "
                f"(pass access_token= or set {config.ENV_ACCESS_TOKEN})"
            )
        result = await self._request("POST", "/events", store_headers(token), body=body)
        return StoreEventResult.from_json(result)

    async def get_events(
        self,
        sandbox_id: str,
        *,
        type: str | None = None,
        since: int | datetime | None = None,
        limit: int | None = None,
    ) -> list[SandboxEvent]:
        """
        Return stored events of one sandbox, oldest first.

        Without *since* the gateway returns the newest *limit* events; with it, the
        first *limit* events strictly after that millisecond.

        Args:
            sandbox_id: The sandbox to read; it must belong to the key's workspace.
            type: Only events of exactly this type.
            since: Only events strictly after this time: milliseconds since the epoch
                or a timezone-aware datetime.
            limit: At most this many events, clamped into 1..1000; the gateway's
                default is 100.

        Raises:
            TypeError, ValueError: Bad arguments, as ``EventsClient.get_events``
                (nothing is sent).
            EventsAuthError: No API key is set (nothing is sent), or the gateway
                refused it.
            EventsNetworkError: Timeout or connection failure.
            EventsError: Any other error answer, or an invalid response.
        """
        path, params = events_query(sandbox_id, type, since, limit)
        return await self._fetch_events(path, params)

    def iter_events(
        self,
        sandbox_id: str,
        *,
        type: str | None = None,
        since: int | datetime | None = None,
        page_size: int = MAX_LIMIT,
    ) -> AsyncGenerator[SandboxEvent, None]:
        """
        Yield every event of a sandbox after *since* (or all of them), oldest first.

        ``async for event in client.iter_events(...)``: pages forward with
        ``since=<last timestamp seen>`` until a page comes back short, one request
        per page, so it also yields events stored while it runs. Arguments and the
        API key are checked when this is called, before it returns.

        Args:
            sandbox_id: The sandbox to read.
            type: Only events of exactly this type.
            since: Start strictly after this time (ms or aware datetime); by default
                from the oldest event the gateway keeps.
            page_size: Events per request, 1..1000.

        Raises:
            TypeError, ValueError: As ``get_events``; *page_size* out of range.
            EventsAuthError, EventsNetworkError, EventsError: As ``get_events``,
                from the iteration that fetches the failing page.
        """
        check_page_size(page_size)
        start = 0 if since is None else since  # strictly after the epoch: all kept
        path, params = events_query(sandbox_id, type, start, page_size)
        self._require_api_key()
        return self._pages(path, params, page_size)

    async def _pages(
        self, path: str, params: dict[str, str], page_size: int
    ) -> AsyncGenerator[SandboxEvent, None]:
        cursor = int(params["since"])
        while True:
            page = await self._fetch_events(path, {**params, "since": str(cursor)})
            for event in page:
                yield event
            following = next_cursor(page, cursor, page_size)
            if following is None:
                return
            cursor = following

    def _require_api_key(self) -> str:
        key = self._api_key
        if key is None:
            raise EventsAuthError(
                "API key required to retrieve events "
                f"(pass api_key= or set {config.ENV_API_KEY})"
            )
        return key

    async def _fetch_events(
        self, path: str, params: dict[str, str]
    ) -> list[SandboxEvent]:
        headers = fetch_headers(self._require_api_key())
        data = await self._request("GET", path, headers, params=params)
        return decode_events(data)

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the AsyncEventsClient is closed")
        session = self._session
        if session is None:
            session = self._session = _new_session(
                self._timeout, self._pool_size, self._ca_file
            )
        return session

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        session = self._open()
        url = self._gateway_url + path
        # aiohttp sends bytes in one write and warns above 1 MiB that this can stall
        # the loop; a file-like body is sent in chunks.
        payload: bytes | io.BytesIO | None = body
        if body is not None and len(body) > _CHUNKED_ABOVE:
            payload = io.BytesIO(body)

        async def send() -> Answer:
            async with session.request(
                method,
                url,
                params=params,
                data=payload,
                headers=headers,
                # Not followed: a redirect would carry X-API-Key to another host.
                allow_redirects=False,
            ) as response:
                content = await response.read()
                reason = response.reason or ""
                return (response.status, content, response.charset, reason)

        return await request_data(send)

    async def aclose(self) -> None:
        """
        Close the keep-alive connections; later calls raise RuntimeError.

        Idempotent. Requests in flight in other tasks fail with ``EventsNetworkError``.
        """
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> AsyncEventsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Never the secrets themselves.
        return (
            f"AsyncEventsClient(gateway_url={self._gateway_url!r}, "
            f"api_key={'set' if self.has_api_key else None!r}, "
            f"access_token={'set' if self.has_access_token else None!r}, "
            f"timeout={self._timeout!r}, pool_size={self._pool_size!r})"
        )


def _new_session(
    timeout: float, pool_size: int, ca_file: str | None
) -> aiohttp.ClientSession:
    import aiohttp

    from .. import __version__
    from .._tls import client_tls_context

    # One gateway host: the pool's total limit is what matters. No cookies (the API
    # is stateless), no proxy or netrc from the environment (trust_env=False, as
    # requests' netrc is refused by EventsClient).
    connector = aiohttp.TCPConnector(
        limit=pool_size,
        limit_per_host=pool_size,
        ssl=True if ca_file is None else client_tls_context(ca_file),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=timeout
        ),
        headers={"User-Agent": f"cse-bridge/{__version__}"},
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        raise_for_status=False,
    )

"""
The events HTTP client: a Pythonic port of the official ``EventsClient``.

See docs/protocol.md#protocol-http.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .. import config
from .._version import __version__
from ..errors import EventsAuthError
from ..models import SandboxEvent, StoreEventResult
from ._envelope import decode_events, next_cursor
from ._errors import request_data
from ._settings import ClientSettings
from ._validation import (
    DEFAULT_POOL_SIZE,
    MAX_LIMIT,
    MIN_LIMIT,
    check_page_size,
    encode_event,
    events_query,
    fetch_headers,
    store_headers,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "MAX_LIMIT",
    "MIN_LIMIT",
    "EventsClient",
    "create_events_client",
]


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    # Passed as ``auth``: stops requests from replacing our Authorization header with
    # credentials it finds in ~/.netrc for the gateway's host.
    return request


class EventsClient(ClientSettings):
    """
    Stores and retrieves sandbox events over HTTP (a port of the official SDK client).

    A sandbox stores events with its access token (``store_event``); an application
    reads them with its API key (``get_events``, ``iter_events``). Every argument falls
    back to its ``COMPUTESDK_*`` environment variable, then to the default.

    Every call blocks until the answer has arrived, for at most *timeout* seconds per
    connect and per read (requests' timeouts are per socket operation, not a total).
    No call retries: the shipping engine above this client does that.

    Thread-safe: one ``requests.Session`` with a keep-alive pool of *pool_size*
    connections is shared by all threads. urllib3's pool hands each request its own
    connection (more than *pool_size* concurrent requests open extra, short-lived
    ones), the session's cookie jar is locked and made to refuse cookies, and no call
    mutates shared session state: each request builds its own headers from the token
    and key, which ``set_access_token``/``set_api_key`` replace with one atomic
    attribute assignment, so a request sees either the old or the new value.

    Args:
        gateway_url: Base URL; env ``COMPUTESDK_GATEWAY_URL``, else the public gateway.
        api_key: Key for reading events; env ``COMPUTESDK_API_KEY``.
        access_token: Sandbox JWT for storing events; env ``COMPUTESDK_ACCESS_TOKEN``.
        timeout: Seconds per connect and per read; default ``config.DEFAULT_TIMEOUT``.
        pool_size: Keep-alive connections kept to the gateway.
        ca_file: The CA bundle that verifies an ``https`` gateway's certificate;
            else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the system's.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument (or the environment value it falls back to) is invalid.
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
        self._close_lock = threading.Lock()
        self._session = self._new_session(pool_size)
        # Per request, not on the session: requests would let REQUESTS_CA_BUNDLE
        # override a session's bundle, and the argument must win.
        self._verify: str | bool = self._ca_file or True

    @staticmethod
    def _new_session(pool_size: int) -> requests.Session:
        session = requests.Session()
        # One gateway host: pool_maxsize is what matters. max_retries=0: no retries
        # here, and a POST must never be replayed behind the caller's back.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"cse-bridge/{__version__}"
        # The API is stateless; refusing cookies keeps the shared jar unchanged.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return session

    def store_event(
        self, type: str, data: Mapping[str, Any] | None = None
    ) -> StoreEventResult:
        """
        Store one event for the sandbox that the access token names.

        Blocks until the gateway has answered (see the class for the timeout).
        The sandbox id comes from the token, never from the arguments.

        Args:
            type: The event type, e.g. ``EventType.EXECUTION_COMPLETED``.
            data: The event's JSON object; ``{}`` by default.

        Returns:
            The stored event's id, sandbox, type and timestamp.

        Raises:
            TypeError: *type* is not a str, *data* is not a mapping or holds a value
                that is not JSON-able (nothing is sent).
            ValueError: *type* is empty, or *data* holds NaN/infinity or a
                reference cycle (nothing is sent).
            EventsAuthError: No access token is set (nothing is sent), or the
                gateway refused it.
            EventsNetworkError: Timeout or connection failure.
            EventsError: Any other error answer, or an invalid response.
        """
        body = encode_event(type, data)
        token = self._access_token  # one read: a concurrent set_access_token is atomic
        if token is None:
            raise EventsAuthError(
                "Access token required to store events "
                f"(pass access_token= or set {config.ENV_ACCESS_TOKEN})"
            )
        headers = store_headers(token)
        result = self._request("POST", "/events", headers=headers, body=body)
        return StoreEventResult.from_json(result)

    def get_events(
        self,
        sandbox_id: str,
        *,
        type: str | None = None,
        since: int | datetime | None = None,
        limit: int | None = None,
    ) -> list[SandboxEvent]:
        """
        Return stored events of one sandbox, oldest first.

        Blocks until the gateway has answered (see the class for the timeout).
        Without *since* the gateway returns the newest *limit* events; with it, the
        first *limit* events strictly after that millisecond.

        Args:
            sandbox_id: The sandbox to read; it must belong to the key's workspace.
            type: Only events of exactly this type.
            since: Only events strictly after this time: milliseconds since the epoch
                or a timezone-aware datetime.
            limit: At most this many events, clamped into 1..1000 like the official
                client; the gateway's default is 100.

        Returns:
            The events, in ascending timestamp order.

        Raises:
            TypeError: An argument has the wrong type (nothing is sent).
            ValueError: *sandbox_id* or *type* is empty, or *since* is negative or a
                naive datetime (nothing is sent).
            EventsAuthError: No API key is set (nothing is sent), or the gateway
                refused it.
            EventsNetworkError: Timeout or connection failure.
            EventsError: Any other error answer, or an invalid response.
        """
        path, params = self._events_query(sandbox_id, type, since, limit)
        return self._fetch_events(path, params)

    def iter_events(
        self,
        sandbox_id: str,
        *,
        type: str | None = None,
        since: int | datetime | None = None,
        page_size: int = MAX_LIMIT,
    ) -> Iterator[SandboxEvent]:
        """
        Yield every event of a sandbox after *since* (or all of them), oldest first.

        Pages forward with ``since=<last timestamp seen>`` until a page comes back
        short, so it also yields events stored while it runs. Each page blocks like
        ``get_events``; arguments and the API key are checked before it returns.
        Our gateway gives every event of a sandbox a unique timestamp, so no event is
        skipped; with a gateway that does not, events sharing the last millisecond of
        a page could be.

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
        # since=0: "strictly after the epoch", i.e. from the oldest event kept.
        start = 0 if since is None else since
        path, params = self._events_query(sandbox_id, type, start, page_size)
        return self._pages(path, params, page_size)

    def _pages(
        self, path: str, params: dict[str, str], page_size: int
    ) -> Iterator[SandboxEvent]:
        cursor = int(params["since"])
        while True:
            page = self._fetch_events(path, {**params, "since": str(cursor)})
            yield from page
            following = next_cursor(page, cursor, page_size)
            if following is None:
                return
            cursor = following

    def _events_query(
        self,
        sandbox_id: str,
        event_type: str | None,
        since: int | datetime | None,
        limit: int | None,
    ) -> tuple[str, dict[str, str]]:
        """Validate ``get_events`` arguments and the API key; return path and query."""
        path, params = events_query(sandbox_id, event_type, since, limit)
        self._require_api_key()
        return path, params

    def _require_api_key(self) -> str:
        key = self._api_key  # one read: a concurrent set_api_key is atomic
        if key is None:
            raise EventsAuthError(
                "API key required to retrieve events "
                f"(pass api_key= or set {config.ENV_API_KEY})"
            )
        return key

    def _fetch_events(self, path: str, params: dict[str, str]) -> list[SandboxEvent]:
        headers = fetch_headers(self._require_api_key())
        data = self._request("GET", path, headers=headers, params=params)
        return decode_events(data)

    def _request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        if self._closed:
            raise RuntimeError("the EventsClient is closed")
        send = functools.partial(
            self._session.request,
            method,
            self._gateway_url + path,
            params=params,
            data=body,
            headers=headers,
            timeout=self._timeout,
            verify=self._verify,
            auth=_keep_headers,
            # Not followed: requests would forward X-API-Key to another host.
            allow_redirects=False,
        )
        return request_data(send)

    def close(self) -> None:
        """
        Close the keep-alive connections; later calls raise RuntimeError.

        Idempotent; does not wait for requests in flight on other threads.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._session.close()

    def __enter__(self) -> EventsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # Never the secrets themselves.
        return (
            f"EventsClient(gateway_url={self._gateway_url!r}, "
            f"api_key={'set' if self.has_api_key else None!r}, "
            f"access_token={'set' if self.has_access_token else None!r}, "
            f"timeout={self._timeout!r}, pool_size={self._pool_size!r})"
        )


def create_events_client(
    *,
    gateway_url: str | None = None,
    api_key: str | None = None,
    access_token: str | None = None,
    timeout: float | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> EventsClient:
    """
    Return a new ``EventsClient``, like the official ``createEventsClient``.

    Does not connect; arguments fall back to the ``COMPUTESDK_*`` environment.

    Raises:
        TypeError, ValueError: As ``EventsClient``.
    """
    return EventsClient(
        gateway_url=gateway_url,
        api_key=api_key,
        access_token=access_token,
        timeout=timeout,
        pool_size=pool_size,
    )

"""
``PubSubClient``: the official SDK's pub/sub client, made correct and Pythonic.

Same surface (``connect``, ``disconnect``, ``get_state``, ``ping``, ``on``), plus a
``stream()`` iterator and a context manager; keepalive, backoff and gap-free
reconnects are built in (see ``_session`` and ``_backfill``). The client is also the
session's ``Hooks``: the ``_session_*`` methods are what its socket thread calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from .. import config
from ..errors import EventsAuthError, EventsError, EventsPubSubError
from ..models import SandboxEvent
from ._backfill import Resumer
from ._connect import handshake
from ._dispatch import DEFAULT_QUEUE_SIZE, Dispatcher
from ._options import positive, resolve_settings
from ._resp import MAX_UNPARSED_BYTES, ErrorReply
from ._session import Session
from ._stream import Streams

if TYPE_CHECKING:
    from ..client import EventsClient

__all__ = ["PubSubClient", "PubSubState", "create_pubsub_client"]

PubSubState: TypeAlias = Literal["disconnected", "connecting", "connected", "error"]
"""What ``get_state()`` returns (the official client's four states)."""

_STOP_TIMEOUT: Final = 5.0


class PubSubClient:
    """
    Follows one sandbox's events live over the gateway's pub/sub port.

    See docs/protocol.md#protocol-pubsub-client.

    ``connect()`` blocks until the server answers; from then on a socket thread
    (``cse-bridge-pubsub``) reads and parses, and a dispatcher thread
    (``cse-bridge-pubsub-dispatch``) calls the listeners in order, so a slow listener
    never stalls the socket. Every method is safe from any thread; ``connect``,
    ``disconnect`` and ``ping`` must not be called from a listener (they wait for it).

    Args:
        sandbox_id: The sandbox to follow; by default the one the token names.
        access_token: The sandbox's token; env ``COMPUTESDK_ACCESS_TOKEN``.
        host: Pub/sub host; env ``COMPUTESDK_PUBSUB_HOST``, else the public one.
        port: Pub/sub port; env ``COMPUTESDK_PUBSUB_PORT``, else 6380.
        api_key: Enables gap-free reconnects (backfill over HTTP); env
            ``COMPUTESDK_API_KEY``. Without one, a gap is possible and said once.
        gateway_url: HTTP base URL for the backfill; env ``COMPUTESDK_GATEWAY_URL``.
        events_client: Use this HTTP client for backfills instead of building one.
        since: Deliver the events stored after this millisecond timestamp first,
            then follow live without a gap or duplicate at the seam (needs a key).
        auto_reconnect: Reopen a dropped connection (not after ``disconnect()``).
        reconnect_delay: First reconnect delay in seconds (doubling, jittered).
        max_reconnect_delay: Cap of the reconnect delay.
        keepalive_interval: Seconds of silence before a ``PING``.
        keepalive_timeout: Seconds to wait for any answer before reconnecting.
        connect_timeout: Default timeout of ``connect()`` and of each reconnect.
        max_rejections: ``-ERR`` answers to a reconnect in a row before giving up.
        max_buffer_bytes: Unparsed input allowed (the protocol's 1 MiB,
            docs/protocol.md#protocol-pubsub-client).
        tls: Speak TLS to the pub/sub port (a gateway run with ``--tls-cert``); env
            ``COMPUTESDK_PUBSUB_TLS``, else False.
        ca_file: The CA bundle that verifies the gateway's certificate (pub/sub and
            backfill); else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the
            system's.
        queue_size: Socket reads the dispatcher may lag behind before back-pressure.

    Raises:
        TypeError, ValueError: An argument (or the env value it falls back to) is bad.
    """

    def __init__(
        self,
        *,
        sandbox_id: str | None = None,
        access_token: str | None = None,
        host: str | None = None,
        port: int | None = None,
        api_key: str | None = None,
        gateway_url: str | None = None,
        events_client: EventsClient | None = None,
        since: int | None = None,
        auto_reconnect: bool = True,
        reconnect_delay: float | None = None,
        max_reconnect_delay: float = 30.0,
        keepalive_interval: float = 30.0,
        keepalive_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_rejections: int = 3,
        max_buffer_bytes: int = MAX_UNPARSED_BYTES,
        tls: bool | None = None,
        ca_file: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self._settings = resolve_settings(
            sandbox_id=sandbox_id,
            access_token=access_token,
            host=host,
            port=port,
            since=since,
            auto_reconnect=auto_reconnect,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            connect_timeout=connect_timeout,
            max_rejections=max_rejections,
            max_buffer_bytes=max_buffer_bytes,
            tls=tls,
            ca_file=ca_file,
        )
        sandbox = self._settings.sandbox_id
        delay = self._settings.reconnect_delay
        if events_client is None and config.resolve_api_key(api_key) is not None:
            from ..client import EventsClient

            events_client = EventsClient(
                gateway_url=gateway_url, api_key=api_key, ca_file=ca_file
            )
        self._events_client = events_client
        self._lock = threading.Condition()
        self._state: PubSubState = "disconnected"
        self._stopped = threading.Event()
        self._dispatcher = Dispatcher(self._stopped, queue_size)
        self._resumer = Resumer(
            self._dispatcher, sandbox, events_client, since=since, retry_delay=delay
        )
        self._session: Session | None = None
        self._streams = Streams()
        self._sessions = 0

    @property
    def sandbox_id(self) -> str:
        """The sandbox this client follows."""
        return self._settings.sandbox_id

    def get_state(self) -> PubSubState:
        """Return ``disconnected``, ``connecting``, ``connected`` or ``error``."""
        return self._state

    def on(self, name: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """
        Call *callback* on the dispatcher thread for each *name* event.

        ``event`` passes a ``SandboxEvent``; ``error`` an exception (a listener that
        raised, a protocol error, a failed backfill); ``connect`` and ``disconnect``
        pass nothing. An exception raised by a listener goes to the ``error``
        listeners (logged, rate-limited, if there are none). Safe from any thread.

        Returns:
            A function that removes this listener.

        Raises:
            ValueError: *name* is not one of the four events.
        """
        self._dispatcher.add(name, callback)
        return lambda: self._dispatcher.remove(name, callback)

    def off(self, name: str, callback: Callable[..., Any]) -> None:
        """Remove a listener added with ``on``; no error if it is not there."""
        self._dispatcher.remove(name, callback)

    def connect(self, timeout: float | None = None) -> None:
        """
        Subscribe; return once the server answered ``+OK``.

        Blocks up to *timeout* seconds (default ``connect_timeout``). Returns at once
        when already connected. Not from a listener.

        Raises:
            EventsAuthError: No access token or sandbox id (nothing is sent).
            EventsPubSubError: The token was rejected (``-ERR``), the connection was
                refused, or no answer came in time.
        """
        settings = self._settings
        if not settings.token:
            raise EventsAuthError(
                f"Access token required to subscribe ({config.ENV_ACCESS_TOKEN})"
            )
        if not settings.sandbox_id:
            raise EventsAuthError("sandbox_id required (the token names none)")
        wait = positive(
            "timeout", settings.connect_timeout if timeout is None else timeout
        )
        with self._lock:
            if self._session is not None:
                # Connected, or reconnecting by itself: wait for the outcome.
                if not self._lock.wait_for(lambda: self._state != "connecting", wait):
                    raise EventsPubSubError("pub/sub connect timed out")
                if self._state == "connected":
                    return
            self._state = "connecting"
            self._stopped.clear()
        try:
            result = handshake(settings, wait)
        except EventsError:
            self._set_state("error")
            raise
        if isinstance(result, ErrorReply):
            self._set_state("error")
            raise EventsPubSubError(result.message)
        session = Session(settings, self)
        with self._lock:
            self._session = session
            self._streams.ended_by = None
            resumed = self._sessions > 0
            self._sessions += 1
        self._dispatcher.start()
        self._set_state("connected")
        self._dispatcher.post(self._resumer.connected, resumed)
        self._dispatcher.emit("connect")
        session.start(result)

    def disconnect(self, timeout: float = _STOP_TIMEOUT) -> None:
        """
        Unsubscribe and close; stop reconnecting; idempotent.

        Blocks up to about *timeout* seconds for the socket thread and for listener
        calls already queued (which still run). Not from a listener.
        """
        with self._lock:
            session, self._session = self._session, None
        if session is None:
            return
        # First: a socket thread blocked on a full dispatcher queue gives up on it.
        self._stopped.set()
        session.stop(timeout)
        self._dispatcher.post(self._resumer.stopped, force=True)
        self._dispatcher.post(self._streams.end, None, force=True)
        self._set_state("disconnected")
        self._dispatcher.stop(timeout)

    def ping(self, timeout: float = 5.0) -> float:
        """
        Send ``PING`` and wait for ``PONG``; return the round trip in seconds.

        Keepalive pings itself; this is for callers who want to measure or check.
        Blocks up to *timeout* seconds. Not from a listener.

        Raises:
            EventsPubSubError: Not connected, or no ``PONG`` in time.
        """
        session = self._session
        if session is None or self._state != "connected":
            raise EventsPubSubError("pub/sub client is not connected")
        return session.ping(timeout)

    def stream(self) -> Iterator[SandboxEvent]:
        """
        Return an iterator over the events from now on; connects when not connected.

        Events are collected from this call on (not from the first ``next()``), in
        an unbounded queue until the loop takes them. Each ``next()`` blocks until an
        event comes. The iteration ends after ``disconnect()``, or raises the error
        that ended the client for good (a rejected token, or a dropped connection
        without ``auto_reconnect``). Not from a listener.

        Raises:
            EventsPubSubError: As ``connect``, here or from ``next()``.
        """
        inbox, remove = self._streams.open(self.on)
        try:
            if self._state != "connected":
                self.connect()
        except BaseException:
            self._streams.forget(inbox, remove)
            raise
        return self._streams.drain(inbox, remove)

    def __enter__(self) -> PubSubClient:
        if self._state != "connected":
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    # The session's hooks (``_session.Hooks``): they run on the socket thread and never
    # block on listeners; whatever reaches user code is posted to the dispatcher.

    def _set_state(self, state: PubSubState) -> None:
        with self._lock:
            self._state = state
            self._lock.notify_all()

    def _session_events(self, events: list[SandboxEvent]) -> None:
        """Hand a batch of live pushes to the dispatcher (socket thread)."""
        self._dispatcher.post(self._resumer.live, events)

    def _session_connected(self) -> None:
        """A reconnect was answered ``+OK`` (socket thread)."""
        self._set_state("connected")
        self._dispatcher.post(self._resumer.connected, True)
        self._dispatcher.emit("connect")

    def _session_dropped(self, error: EventsError | None, reconnecting: bool) -> None:
        """The connection ended (socket thread)."""
        if self._stopped.is_set() or self._session is None:
            self._dispatcher.emit("disconnect")
            return
        if error is not None:
            self._dispatcher.post(self._dispatcher.report, error)
        self._set_state("connecting" if reconnecting else "disconnected")
        self._dispatcher.emit("disconnect")
        if not reconnecting:
            with self._lock:
                self._session = None
            self._dispatcher.post(
                self._streams.end, error or EventsPubSubError("pub/sub connection lost")
            )

    def _session_error(self, error: EventsError) -> None:
        """Report a recoverable error (socket thread)."""
        self._dispatcher.post(self._dispatcher.report, error)

    def _session_gave_up(self, error: EventsError) -> None:
        """Reconnecting was refused for good (socket thread)."""
        with self._lock:
            self._session = None
        self._set_state("error")
        self._dispatcher.post(self._dispatcher.report, error)
        self._dispatcher.post(self._streams.end, error)

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"PubSubClient(sandbox_id={settings.sandbox_id!r}, "
            f"host={settings.host!r}, port={settings.port!r}, state={self._state!r})"
        )


def create_pubsub_client(**options: Any) -> PubSubClient:
    """
    Return a new ``PubSubClient``, like the official ``createPubSubClient``.

    Does not connect; takes ``PubSubClient``'s keyword arguments.
    """
    return PubSubClient(**options)

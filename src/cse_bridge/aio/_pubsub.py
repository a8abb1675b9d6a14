"""
``AsyncPubSubClient``: the pub/sub client for asyncio, ``async for`` over events.

The same guarantees as ``cse_bridge.subscriber.PubSubClient``, from the same rules
(``cse_bridge.subscriber.protocol``): RESP parsed by hiredis, keepalive, jittered
reconnects and, with an API key, gap-free backfills. Everything runs on the loop's
thread, so the state here needs no lock; the tasks it starts are named
``cse-bridge-pubsub`` (keepalive and reconnects) and ``cse-bridge-pubsub-backfill``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Final

from .. import config
from ..client.protocol import next_cursor
from ..errors import EventsAuthError, EventsError, EventsPubSubError
from ..models import SandboxEvent
from ..subscriber import PubSubState
from ..subscriber.protocol import (
    BACKFILL_PAGE,
    MAX_UNPARSED_BYTES,
    PING,
    UNSUBSCRIBE,
    ErrorReply,
    Frame,
    Sequencer,
    backfill_retry_delay,
    backfill_start,
    backoff_delay,
    first_reconnect_delay,
    resolve_settings,
    sort_frames,
)
from ._http import AsyncEventsClient
from ._link import Link, open_link

__all__ = ["AsyncPubSubClient"]

logger = logging.getLogger(__name__)

_END: Final = object()
_LOG_INTERVAL: Final = 10.0


class AsyncPubSubClient:
    """
    Follows one sandbox's events live over the gateway's pub/sub port, on asyncio.

    See docs/protocol.md#protocol-pubsub-client. ``async for event in
    client.stream()`` yields each event once, in order; with an API key, also
    across reconnects (the events stored meanwhile are backfilled over HTTP).

    The connection lives as long as something holds it: ``connect()`` (or ``async
    with``) holds it until ``disconnect()``; otherwise ``stream()`` opens it and the
    last stream to end closes it, whether its loop ended with ``break``, an
    exception, or the cancellation of the task that iterates. Nothing is left
    running afterwards: no task, no socket.

    Use a client from one event loop. Its methods are coroutines but for
    ``get_state``; none blocks the loop. Recoverable errors (a push that does not
    decode, a failed reconnect, a failed backfill) are logged through
    ``logging.getLogger("cse_bridge.aio._pubsub")``, rate-limited, and the stream
    goes on; what ends the client for good is raised from every stream.

    Args:
        sandbox_id: The sandbox to follow; by default the one the token names.
        access_token: The sandbox's token; env ``COMPUTESDK_ACCESS_TOKEN``.
        host: Pub/sub host; env ``COMPUTESDK_PUBSUB_HOST``, else the public one.
        port: Pub/sub port; env ``COMPUTESDK_PUBSUB_PORT``, else 6380.
        api_key: Enables gap-free reconnects (backfill over HTTP); env
            ``COMPUTESDK_API_KEY``. Without one, a gap is possible and logged once.
        gateway_url: HTTP base URL for the backfill; env ``COMPUTESDK_GATEWAY_URL``.
        events_client: Use this ``AsyncEventsClient`` for backfills (not closed
            here) instead of building one.
        since: Deliver the events stored after this millisecond timestamp first,
            then follow live without a gap or duplicate at the seam (needs a key).
        auto_reconnect: Reopen a dropped connection (not after ``disconnect()``).
        reconnect_delay: First reconnect delay in seconds (doubling, jittered).
        max_reconnect_delay: Cap of the reconnect delay.
        keepalive_interval: Seconds of silence before a ``PING``.
        keepalive_timeout: Seconds to wait for any answer before reconnecting.
        connect_timeout: Default timeout of ``connect()`` and of each reconnect.
        max_rejections: ``-ERR`` answers to a reconnect in a row before giving up.
        max_buffer_bytes: Unparsed input allowed (the protocol's 1 MiB).
        tls: Speak TLS to the pub/sub port (a gateway run with ``--tls-cert``); env
            ``COMPUTESDK_PUBSUB_TLS``, else False.
        ca_file: The CA bundle that verifies the gateway's certificate (pub/sub and
            backfill); else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the
            system's.

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
        events_client: AsyncEventsClient | None = None,
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
        self._http = events_client
        self._owns_http = False
        if events_client is None and config.resolve_api_key(api_key) is not None:
            # Built (and its arguments checked) now; it opens nothing until used.
            self._http = AsyncEventsClient(
                gateway_url=gateway_url, api_key=api_key, ca_file=ca_file
            )
            self._owns_http = True
        self._gateway_url = gateway_url
        self._api_key = api_key
        self._state: PubSubState = "disconnected"
        self._changed: asyncio.Event | None = None
        self._link: Link | None = None
        self._session: asyncio.Task[None] | None = None
        self._held = False
        """True while ``connect()`` holds the connection open (not a stream)."""
        self._stopping = False
        self._sessions = 0
        self._pongs: deque[asyncio.Future[bool] | None] = deque()
        self._inboxes: list[asyncio.Queue[object]] = []
        self._ended_by: EventsError | None = None
        # Gap-free resumes: the same Sequencer and rules as the threaded client.
        self._sequencer = Sequencer(since)
        self._history_wanted = since is not None
        self._backfill: asyncio.Task[None] | None = None
        self._generation = 0
        self._warned_gap = False
        self._logged_at = -_LOG_INTERVAL

    @property
    def sandbox_id(self) -> str:
        """The sandbox this client follows."""
        return self._settings.sandbox_id

    def get_state(self) -> PubSubState:
        """Return ``disconnected``, ``connecting``, ``connected`` or ``error``."""
        return self._state

    # connecting and disconnecting

    async def connect(self, timeout: float | None = None) -> None:
        """
        Subscribe, and hold the connection open until ``disconnect()``.

        Returns once the server answered ``+OK`` (at once when already connected),
        waiting at most *timeout* seconds (default ``connect_timeout``). Cancelling
        it leaves no socket open.

        Raises:
            EventsAuthError: No access token or sandbox id (nothing is sent).
            EventsPubSubError: The token was rejected (``-ERR``), the connection was
                refused, or no answer came in time.
        """
        await self._open(timeout)
        self._held = True

    async def _open(self, timeout: float | None) -> None:
        settings = self._settings
        if not settings.token:
            raise EventsAuthError(
                f"Access token required to subscribe ({config.ENV_ACCESS_TOKEN})"
            )
        if not settings.sandbox_id:
            raise EventsAuthError("sandbox_id required (the token names none)")
        wait = settings.connect_timeout if timeout is None else timeout
        if self._state == "connected":
            return
        if self._state == "connecting":  # another task, or reconnecting by itself
            await self._settle(wait)
            if self.get_state() == "connected":  # a call: _settle() changed it
                return
        self._set_state("connecting")
        self._stopping = False
        try:
            result = await open_link(settings, wait)
        except EventsError:
            self._set_state("error")
            raise
        except BaseException:  # cancelled: open_link closed the socket
            self._set_state("disconnected")
            raise
        if isinstance(result, ErrorReply):
            self._set_state("error")
            raise EventsPubSubError(result.message)
        if self._stopping:  # disconnect() ran while the handshake was waiting
            await result.close()
            self._set_state("disconnected")
            raise EventsPubSubError("pub/sub client disconnected while connecting")
        self._ended_by = None
        self._start_session(result, resumed=self._sessions > 0)
        self._session = asyncio.get_running_loop().create_task(
            self._run(result), name="cse-bridge-pubsub"
        )

    async def _settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._state == "connecting":
            left = deadline - time.monotonic()
            if left <= 0:
                raise EventsPubSubError("pub/sub connect timed out")
            changed = self._changed = self._changed or asyncio.Event()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def disconnect(self) -> None:
        """
        Unsubscribe and close; stop reconnecting; end every stream; idempotent.

        Waits until the socket is closed and the client's tasks have ended (about a
        second at most). The ``events_client`` the client built is closed too.
        """
        self._held = False
        self._stopping = True
        session, self._session = self._session, None
        link, self._link = self._link, None
        backfill, self._backfill = self._backfill, None
        current = asyncio.current_task()
        tasks = [t for t in (session, backfill) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        self._generation += 1  # pages already fetched must not move the cursor on
        self._sequencer.abort_backfill()
        self._fail_pongs()
        if session is not None or link is not None:
            self._set_state("disconnected")
            self._end_streams(None)
        try:
            if link is not None:
                link.send(UNSUBSCRIBE)
                await link.close()
            if tasks:
                await asyncio.wait(tasks)
        finally:
            if self._owns_http and self._http is not None:
                http = self._http
                # A new one for a later connect(): a closed client stays closed.
                self._http = AsyncEventsClient(
                    gateway_url=self._gateway_url, api_key=self._api_key
                )
                await http.aclose()

    # the session task: keepalive, then reconnects

    def _start_session(self, link: Link, *, resumed: bool) -> None:
        self._link = link
        self._sessions += 1
        self._set_state("connected")
        self._resume(resumed)
        link.attach(functools.partial(self._on_frames, link))

    async def _run(self, link: Link) -> None:
        settings = self._settings
        current: Link | None = link
        try:
            while current is not None:
                error = await self._keepalive(current)
                await current.close()
                self._link = None
                self._fail_pongs()
                if self._stopping:
                    return
                if error is not None:
                    self._report(error)
                if not settings.auto_reconnect:
                    self._set_state("disconnected")
                    self._finish(error or EventsPubSubError("pub/sub connection lost"))
                    return
                self._set_state("connecting")
                current = await self._reconnect(error)
        except BaseException:
            # Cancelled by disconnect(), or our own bug: close before going.
            if self._link is not None:
                self._link.abort()
            raise

    async def _reconnect(self, ended_by: EventsError | None) -> Link | None:
        settings = self._settings
        attempt = rejections = 0
        while True:
            delay = backoff_delay(
                attempt, settings.reconnect_delay, settings.max_reconnect_delay
            )
            if attempt == 0:
                delay = first_reconnect_delay(ended_by, delay)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                result = await open_link(settings, settings.connect_timeout)
            except EventsError as exc:
                logger.debug("pub/sub reconnect failed: %s", exc.message)
                continue
            if isinstance(result, ErrorReply):
                rejections += 1
                rejected = EventsPubSubError(result.message)
                if rejections >= settings.max_rejections:
                    self._set_state("error")
                    self._finish(rejected)
                    return None
                self._report(rejected)
                continue
            self._start_session(result, resumed=True)
            return result

    async def _keepalive(self, link: Link) -> EventsError | None:
        """Ping after silence; return why the connection ended."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        ping_sent: float | None = None
        lost = link.lost
        while not lost.done():
            now = loop.time()
            if ping_sent is not None and link.last_rx > ping_sent:
                ping_sent = None  # any byte proves the connection alive
            if ping_sent is None:
                wait = link.last_rx + settings.keepalive_interval - now
                if wait <= 0:
                    self._pongs.append(None)
                    link.send(PING)
                    ping_sent = now
                    continue
            else:
                wait = ping_sent + settings.keepalive_timeout - now
                if wait <= 0:
                    link.fail(
                        EventsPubSubError(
                            f"pub/sub keepalive: no answer within "
                            f"{settings.keepalive_timeout} s; reconnecting"
                        )
                    )
                    break
            await asyncio.wait([lost], timeout=wait)
        return lost.result()

    def _finish(self, error: EventsError) -> None:
        """The session ended for good: stop the backfill, end every stream."""
        self._session = None
        backfill, self._backfill = self._backfill, None
        if backfill is not None:
            backfill.cancel()
        self._generation += 1
        self._sequencer.abort_backfill()
        self._end_streams(error)

    # frames and events (called by the link, on the loop)

    def _on_frames(self, link: Link, frames: list[Frame]) -> None:
        batch = sort_frames(frames)
        for error in batch.errors:
            self._report(error)
        pongs = self._pongs
        for _ in range(batch.pongs):
            waiter = pongs.popleft() if pongs else None
            if waiter is not None and not waiter.done():
                waiter.set_result(True)
        if batch.events:
            self._deliver(self._sequencer.live(batch.events))
        if batch.ended is not None:
            # The server ends a live subscription with -ERR: reconnect, backfill.
            link.fail(batch.ended)

    def _deliver(self, events: list[SandboxEvent]) -> None:
        if events:
            for inbox in self._inboxes:
                inbox.put_nowait(events)

    def _end_streams(self, error: EventsError | None) -> None:
        self._ended_by = error
        for inbox in self._inboxes:
            inbox.put_nowait(_END)

    # gap-free resumes: the threaded Resumer's rules, on the loop

    def _resume(self, resumed: bool) -> None:
        sequencer = self._sequencer
        sequencer.last_timestamp, wanted = backfill_start(
            sequencer.last_timestamp,
            resumed=resumed,
            history_wanted=self._history_wanted,
        )
        if not wanted:
            return
        self._history_wanted = False
        http = self._http
        if http is None:
            if resumed and not self._warned_gap:
                self._warned_gap = True
                logger.warning(
                    "pub/sub reconnected without an API key: events stored while "
                    "disconnected were not backfilled (a gap is possible)"
                )
            return
        if self._backfill is not None:
            self._backfill.cancel()
        self._generation += 1
        sequencer.begin_backfill()
        self._backfill = asyncio.get_running_loop().create_task(
            self._run_backfill(http, self._generation, sequencer.last_timestamp),
            name="cse-bridge-pubsub-backfill",
        )

    async def _run_backfill(
        self, http: AsyncEventsClient, generation: int, cursor: int
    ) -> None:
        failures = 0
        error: EventsError | None = None
        while True:
            try:
                page = await http.get_events(
                    self.sandbox_id, since=cursor, limit=BACKFILL_PAGE
                )
            except EventsAuthError as exc:
                error = exc  # a rejected key will not start working on its own
                break
            except EventsError as exc:
                failures += 1
                logger.warning("pub/sub backfill failed (retrying): %s", exc.message)
                await asyncio.sleep(
                    backfill_retry_delay(failures, self._settings.reconnect_delay)
                )
                continue
            failures = 0
            if generation != self._generation:
                return
            self._deliver(self._sequencer.backfilled(page))
            try:
                following = next_cursor(page, cursor, BACKFILL_PAGE)
            except EventsError as exc:
                error = exc
                break
            if following is None:
                break
            cursor = following
        if generation != self._generation:
            return
        self._backfill = None
        if error is not None:
            self._report(error)
        self._deliver(self._sequencer.end_backfill())

    # ping and the streams

    async def ping(self, timeout: float = 5.0) -> float:
        """
        Send ``PING`` and wait for ``PONG``; return the round trip in seconds.

        Keepalive pings by itself; this is for callers who want to measure or check.

        Raises:
            EventsPubSubError: Not connected, the connection dropped, or no ``PONG``
                within *timeout* seconds.
        """
        link = self._link
        if link is None or self._state != "connected":
            raise EventsPubSubError("pub/sub client is not connected")
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self._pongs.append(waiter)
        if not link.send(PING):
            waiter.cancel()
            raise EventsPubSubError("pub/sub ping failed: the connection is closing")
        try:
            answered = await asyncio.wait_for(waiter, timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise EventsPubSubError(
                f"pub/sub ping: no PONG within {timeout} s"
            ) from None
        if not answered:
            raise EventsPubSubError("pub/sub ping: the connection dropped")
        return time.perf_counter() - started

    def _fail_pongs(self) -> None:
        pongs, self._pongs = self._pongs, deque()
        for waiter in pongs:
            if waiter is not None and not waiter.done():
                waiter.set_result(False)

    async def stream(self) -> AsyncGenerator[SandboxEvent, None]:
        """
        Yield the events from the start of the loop on; connects when not connected.

        ``async for event in client.stream(): ...``. Events are collected from the
        first iteration, in an unbounded queue until the loop takes them. The
        iteration ends after ``disconnect()``, or raises the error that ended the
        client for good (a rejected token, or a dropped connection without
        ``auto_reconnect``). When no ``connect()`` holds the connection, the last
        stream to end closes it (``break``, an exception, a cancelled task): wrap the
        stream in ``contextlib.aclosing`` to have that happen before the next line
        rather than when the generator is collected.

        Raises:
            EventsAuthError, EventsPubSubError: As ``connect``.
        """
        inbox: asyncio.Queue[object] = asyncio.Queue()
        self._inboxes.append(inbox)
        try:
            if self._state != "connected":
                await self._open(None)
            while True:
                item = await inbox.get()
                if item is _END:
                    if self._ended_by is not None:
                        raise self._ended_by
                    return
                for event in item:  # type: ignore[attr-defined]  # a list of events
                    yield event
        finally:
            self._inboxes.remove(inbox)
            if not self._inboxes and not self._held:
                await self.disconnect()

    async def __aenter__(self) -> AsyncPubSubClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def _set_state(self, state: PubSubState) -> None:
        self._state = state
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def _report(self, error: BaseException) -> None:
        # Rate-limited: a source failing on every event must not flood the log.
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL:
            self._logged_at = now
            logger.warning("pub/sub error: %s", error)

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"AsyncPubSubClient(sandbox_id={settings.sandbox_id!r}, "
            f"host={settings.host!r}, port={settings.port!r}, state={self._state!r})"
        )

"""AsyncPubSubClient on the real gateway: the threaded client's behaviour, async."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from cse_bridge.aio import AsyncEventsClient, AsyncPubSubClient
from cse_bridge.errors import EventsAuthError, EventsNetworkError, EventsPubSubError
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent

from ..conftest import make_gateway_config
from ..helpers import API_KEY
from ..subscriber.servers import event_json, message_frame, raw_server, read_command
from .conftest import FAST, WAIT, connections_to, eventually, other_tasks, run, take

pytestmark = pytest.mark.usefixtures("clean_config_env")


@pytest.fixture
def sandbox_id() -> str:
    """A fresh sandbox id."""
    return f"sb-{uuid.uuid4().hex[:12]}"


def options(gw: GatewayThread, sandbox_id: str, **extra: Any) -> dict[str, Any]:
    """Client options for *gw*: address, token, API key, HTTP URL, quick retries."""
    return {
        **FAST,
        "host": gw.pubsub_host,
        "port": gw.pubsub_port,
        "access_token": gw.issue_token(sandbox_id),
        "api_key": API_KEY,
        "gateway_url": gw.http_url,
        **extra,
    }


def producer(gw: GatewayThread, sandbox_id: str) -> AsyncEventsClient:
    """An HTTP client that stores events for *sandbox_id*."""
    return AsyncEventsClient(
        gateway_url=gw.http_url, access_token=gw.issue_token(sandbox_id), timeout=5.0
    )


async def settle() -> None:
    """Let the loop run the callbacks of sockets that were just closed."""
    for _ in range(3):
        await asyncio.sleep(0)


class TestAsyncPubSubEvents:
    """Ordered delivery."""

    def test_events_arrive_in_order_as_stored(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """Events stored after connect() arrive once each, in the order stored."""

        async def main() -> tuple[list[str], list[str], str]:
            async with (
                producer(gateway, sandbox_id) as http,
                AsyncPubSubClient(**options(gateway, sandbox_id)) as client,
            ):
                stream = client.stream()
                receiving = asyncio.ensure_future(take(stream, 30))
                await asyncio.sleep(0.05)  # the stream's first iteration has begun
                stored = [
                    (await http.store_event("custom", {"i": i})).event_id
                    for i in range(30)
                ]
                got = await receiving
                state = client.get_state()
                await stream.aclose()
            return stored, [e.id for e in got], state

        stored, got, state = run(main())
        assert (stored, "connected") == (got, state)

    def test_since_backfills_then_follows_live(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """With since, stored history comes first, then live events, no seam."""

        async def main() -> tuple[list[str], list[str]]:
            async with producer(gateway, sandbox_id) as http:
                before = [
                    (await http.store_event("custom", {"i": i})).event_id
                    for i in range(5)
                ]
                client = AsyncPubSubClient(**options(gateway, sandbox_id, since=0))
                stream = client.stream()
                first = await take(stream, 5)
                after = (await http.store_event("custom", {"i": 5})).event_id
                last = await take(stream, 1)
                await stream.aclose()
            return [*before, after], [e.id for e in first + last]

        stored, got = run(main())
        assert stored == got


class TestAsyncPubSubConnect:
    """Connect errors, as the threaded client raises them."""

    def test_bad_token_raises(self, gateway: GatewayThread, sandbox_id: str) -> None:
        """A token the gateway refuses raises EventsPubSubError; state is error."""
        opts = {
            **options(gateway, sandbox_id, access_token="not-a-jwt"),
            "sandbox_id": sandbox_id,
        }
        client = AsyncPubSubClient(**opts)
        with pytest.raises(EventsPubSubError):
            run(client.connect())
        assert "error" == client.get_state()

    def test_refused_raises(self) -> None:
        """A closed port raises EventsPubSubError."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = AsyncPubSubClient(
            access_token="t", sandbox_id="sb", host="127.0.0.1", port=port
        )
        with pytest.raises(EventsPubSubError, match="failed"):
            run(client.connect())

    def test_missing_token_sends_nothing(self) -> None:
        """Without a token, connect raises EventsAuthError before connecting."""
        client = AsyncPubSubClient(sandbox_id="sb", host="127.0.0.1", port=9)
        with pytest.raises(EventsAuthError):
            run(client.connect())
        assert "disconnected" == client.get_state()


class TestAsyncPubSubPingDisconnect:
    """ping, and a disconnect that leaves nothing behind."""

    def test_ping_answers(self, gateway: GatewayThread, sandbox_id: str) -> None:
        """ping() returns a positive round trip while connected."""

        async def main() -> float:
            async with AsyncPubSubClient(**options(gateway, sandbox_id)) as client:
                return await client.ping()

        assert 0 < run(main()) < WAIT

    def test_ping_when_disconnected_raises(self) -> None:
        """ping() before connect raises EventsPubSubError."""
        client = AsyncPubSubClient(sandbox_id="sb", access_token="t", port=9)
        with pytest.raises(EventsPubSubError, match="not connected"):
            run(client.ping())

    def test_disconnect_stops_everything(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """After disconnect: state disconnected, no task, no socket; idempotent."""

        async def main() -> tuple[str, set[object], int]:
            client = AsyncPubSubClient(**options(gateway, sandbox_id))
            await client.connect()
            await client.ping()
            await client.disconnect()
            await client.disconnect()
            await settle()
            left = connections_to(gateway.pubsub_port)
            return client.get_state(), other_tasks(), left

        assert ("disconnected", set(), 0) == run(main())

    def test_stream_ends_on_disconnect(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """disconnect() from another task ends an open stream without an error."""

        async def main() -> list[SandboxEvent]:
            client = AsyncPubSubClient(**options(gateway, sandbox_id))
            await client.connect()
            collected: list[SandboxEvent] = []

            async def consume() -> None:
                async for event in client.stream():
                    collected.append(event)

            consumer = asyncio.ensure_future(consume())
            await asyncio.sleep(0.05)
            await client.disconnect()
            await asyncio.wait_for(consumer, WAIT)
            return collected

        assert [] == run(main())


class TestAsyncPubSubCancellation:
    """Leaving the loop or cancelling the consumer closes the connection."""

    def test_break_closes_the_connection(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """A stream that opened the connection closes it when the loop breaks."""

        async def main() -> tuple[bool, str, set[object], int]:
            client = AsyncPubSubClient(**options(gateway, sandbox_id))
            async with producer(gateway, sandbox_id) as http:

                async def consume() -> SandboxEvent:
                    async for event in client.stream():
                        return event  # leaves the loop: the generator is dropped
                    raise AssertionError("the stream ended")

                consumer = asyncio.ensure_future(consume())
                await eventually(lambda: client.get_state() == "connected")
                await http.store_event("custom")
                await consumer
            closed = await eventually(lambda: client.get_state() == "disconnected")
            await eventually(lambda: not other_tasks())
            await settle()
            left = connections_to(gateway.pubsub_port)
            return closed, client.get_state(), other_tasks(), left

        assert (True, "disconnected", set(), 0) == run(main())

    def test_cancelled_consumer_closes_the_connection(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """Cancelling the task blocked in ``async for`` closes socket and tasks."""

        async def main() -> tuple[str, set[object], int]:
            client = AsyncPubSubClient(**options(gateway, sandbox_id))

            async def consume() -> None:
                async for _ in client.stream():
                    pass

            consumer = asyncio.ensure_future(consume())
            await eventually(lambda: client.get_state() == "connected")
            during = connections_to(gateway.pubsub_port)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            await settle()
            after = connections_to(gateway.pubsub_port)
            return client.get_state(), other_tasks(), during, after

        assert ("disconnected", set(), 1, 0) == run(main())

    def test_cancelled_while_connecting(self) -> None:
        """Cancelling a stream still waiting for +OK leaves no socket open."""

        def slow(conn: socket.socket, _: int) -> None:
            read_command(conn)
            while conn.recv(100):  # never answers; closes when the client has
                pass
            conn.close()

        with raw_server(slow) as port:

            async def main() -> tuple[str, set[object], int]:
                client = AsyncPubSubClient(
                    access_token="t", sandbox_id="sb", host="127.0.0.1", port=port
                )

                async def consume() -> None:
                    async for _ in client.stream():
                        pass

                consumer = asyncio.ensure_future(consume())
                await eventually(lambda: connections_to(port) == 1)
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
                await settle()
                return client.get_state(), other_tasks(), connections_to(port)

            assert ("disconnected", set(), 0) == run(main())

    def test_a_held_connection_outlives_its_streams(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """After connect(), leaving a stream keeps the connection for the next."""

        async def main() -> tuple[str, list[int]]:
            async with (
                producer(gateway, sandbox_id) as http,
                AsyncPubSubClient(**options(gateway, sandbox_id)) as client,
            ):
                got = []
                for i in range(2):
                    async with contextlib.aclosing(client.stream()) as events:
                        receiving = asyncio.ensure_future(take(events, 1))
                        await asyncio.sleep(0.05)
                        await http.store_event("custom", {"i": i})
                        got.extend(e.data["i"] for e in await receiving)
                return client.get_state(), got

        assert ("connected", [0, 1]) == run(main())


class TestAsyncPubSubConcurrency:
    """Many streams on one loop."""

    def test_many_clients_each_get_every_event(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """Twenty clients streaming on one loop each receive every event in order."""

        async def main() -> tuple[list[str], list[list[str]], set[object]]:
            clients = [
                AsyncPubSubClient(**options(gateway, sandbox_id)) for _ in range(20)
            ]
            for client in clients:
                await client.connect()
            streams = [client.stream() for client in clients]
            receivers = [asyncio.ensure_future(take(s, 25)) for s in streams]
            await asyncio.sleep(0.1)
            async with producer(gateway, sandbox_id) as http:
                stored = [
                    (await http.store_event("custom", {"i": i})).event_id
                    for i in range(25)
                ]
            got = await asyncio.gather(*receivers)
            for client in clients:
                await client.disconnect()
            for stream in streams:
                await stream.aclose()
            return stored, [[e.id for e in g] for g in got], other_tasks()

        stored, got, left = run(main())
        assert ([stored] * 20, set()) == (got, left)

    def test_many_streams_of_one_client(
        self, gateway: GatewayThread, sandbox_id: str
    ) -> None:
        """Ten streams of one client see the same events; the last one closes it."""

        async def main() -> tuple[list[list[int]], str]:
            client = AsyncPubSubClient(**options(gateway, sandbox_id))
            streams = [client.stream() for _ in range(10)]
            receivers = [asyncio.ensure_future(take(s, 3)) for s in streams]
            await eventually(lambda: client.get_state() == "connected")
            await asyncio.sleep(0.05)
            async with producer(gateway, sandbox_id) as http:
                for i in range(3):
                    await http.store_event("custom", {"i": i})
            got = await asyncio.gather(*receivers)
            for stream in streams:
                await stream.aclose()
            return [[e.data["i"] for e in g] for g in got], client.get_state()

        assert ([[0, 1, 2]] * 10, "disconnected") == run(main())


class TestAsyncPubSubSession:
    """Framing, keepalive and reconnect limits, against a raw server."""

    def test_garbage_ends_the_stream_without_reconnect(self) -> None:
        """Bytes that are not RESP drop the connection; without reconnects, it ends."""
        go = threading.Event()

        def garbage(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n" + message_frame(event_json(1)))
            go.wait(WAIT)
            conn.sendall(b"?garbage\r\n")
            while conn.recv(100):
                pass

        with raw_server(garbage) as port:

            async def main() -> list[str]:
                client = AsyncPubSubClient(
                    access_token="t",
                    sandbox_id="sb-raw",
                    host="127.0.0.1",
                    port=port,
                    auto_reconnect=False,
                )
                got: list[str] = []

                async def consume() -> None:
                    async for event in client.stream():
                        got.append(event.id)
                        go.set()

                with pytest.raises(EventsPubSubError, match=r"(?i)protocol error"):
                    await consume()
                return [*got, client.get_state()]

            assert ["evt_1", "disconnected"] == run(main())

    def test_silent_server_is_detected(self, caplog: pytest.LogCaptureFixture) -> None:
        """A server that stops answering (even PING) is dropped and reconnected."""
        connections = threading.Semaphore(0)

        def silent(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n")
            connections.release()
            while conn.recv(100):  # swallow PINGs, never answer
                pass

        with raw_server(silent) as port:

            async def main() -> bool:
                async with AsyncPubSubClient(
                    access_token="t",
                    sandbox_id="sb",
                    host="127.0.0.1",
                    port=port,
                    keepalive_interval=0.1,
                    keepalive_timeout=0.2,
                    **FAST,
                ):
                    return await asyncio.to_thread(
                        lambda: (
                            connections.acquire(timeout=WAIT)
                            and connections.acquire(timeout=WAIT)
                        )
                    )

            with caplog.at_level(logging.WARNING, "cse_bridge.aio"):
                reconnected = run(main())
        assert (True, True) == (reconnected, "keepalive" in caplog.text)

    def test_rejected_token_is_not_retried_forever(self) -> None:
        """After a drop, repeated -ERR answers end the stream with that error."""

        def accept_once(conn: socket.socket, index: int) -> None:
            read_command(conn)
            if index == 0:
                conn.sendall(b"+OK\r\n")
                conn.close()
                return
            conn.sendall(b"-ERR Token expired\r\n")

        with raw_server(accept_once) as port:
            client = AsyncPubSubClient(
                access_token="t",
                sandbox_id="sb",
                host="127.0.0.1",
                port=port,
                max_rejections=2,
                **FAST,
            )

            async def main() -> None:
                async for _ in client.stream():
                    pass

            with pytest.raises(EventsPubSubError, match="Token expired"):
                run(main())
        assert "error" == client.get_state()


class TestAsyncGatewayRestart:
    """Gap-free resumes across a gateway restart (API key), and the gap without."""

    def test_sqlite_gateway_killed_and_restarted(
        self, tmp_path: Path, sandbox_id: str
    ) -> None:
        """Events stored before, during and after a restart arrive once, in order."""
        config = make_gateway_config(f"sqlite:///{tmp_path / 'events.db'}")
        first = GatewayThread(config).start()
        second = GatewayThread(
            make_gateway_config(
                config.store_url,
                http_port=first.gateway.http_port,
                pubsub_port=first.pubsub_port,
            )
        )
        restarted = threading.Event()
        stored: list[str] = []

        async def store(http: AsyncEventsClient, count: int) -> None:
            while len(stored) < count:
                try:
                    stored.append((await http.store_event("custom")).event_id)
                except EventsNetworkError:
                    await asyncio.to_thread(restarted.wait, WAIT)

        async def main() -> list[str]:
            client = AsyncPubSubClient(**options(first, sandbox_id))
            async with producer(first, sandbox_id) as http:
                stream = client.stream()
                receiving = asyncio.ensure_future(take(stream, 60))
                await eventually(lambda: client.get_state() == "connected")
                await asyncio.sleep(0.05)
                await store(http, 20)
                storing = asyncio.ensure_future(store(http, 60))
                await asyncio.to_thread(first.stop)
                await asyncio.to_thread(second.start)
                restarted.set()
                await storing
                got = await receiving
                await stream.aclose()
            return [e.id for e in got]

        try:
            got = run(main(), timeout=60)
        finally:
            restarted.set()
            first.stop()
            second.stop()
        assert (stored, 60) == (got, len(got))

    def test_without_api_key_a_gap_is_logged_once(
        self,
        gateway: GatewayThread,
        sandbox_id: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Without an API key a reconnect warns once, in the log, of a gap."""
        config = make_gateway_config(
            http_port=gateway.gateway.http_port, pubsub_port=gateway.pubsub_port
        )

        async def main() -> str:
            client = AsyncPubSubClient(**options(gateway, sandbox_id, api_key=None))
            await client.connect()
            await asyncio.to_thread(gateway.stop)
            with GatewayThread(config):
                await eventually(lambda: client.get_state() == "connecting")
                await eventually(lambda: client.get_state() == "connected")
            await client.disconnect()
            return client.get_state()

        with caplog.at_level(logging.WARNING, "cse_bridge.aio"):
            assert "disconnected" == run(main())
        gaps = [r for r in caplog.records if "without an API key" in r.getMessage()]
        assert 1 == len(gaps)

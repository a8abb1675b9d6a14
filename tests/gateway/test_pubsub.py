"""The gateway's pub/sub server, driven over raw sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import hiredis
import pytest
import requests

from cse_bridge.gateway import (
    Authenticator,
    GatewayLimits,
    GatewayThread,
    _pubsub,
    issue_token,
)
from cse_bridge.gateway._pubsub import PubSubServer
from cse_bridge.gateway.stores import LocalBroker, SandboxKey, StoredEvent, Subscriber
from cse_bridge.gateway.stores.memory import MemoryStore

from ..conftest import make_gateway_config
from ..helpers import API_KEYS, SECRET, WORKSPACE

T = TypeVar("T")

TIMEOUT = 10.0
"""Socket timeout: a reply that has not come by then never will."""


# --- a raw RESP client ---------------------------------------------------------------


class RespClient:
    """A blocking socket plus an incremental RESP parser (hiredis) for its replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()

    def send(self, data: bytes) -> None:
        """Send *data* in one piece."""
        self.sock.sendall(data)

    def subscribe(self, sandbox_id: str, token: str) -> Any:
        """Send an inline SUBSCRIBE and return the reply."""
        self.send(f"SUBSCRIBE {sandbox_id} {token}\r\n".encode())
        return self.reply()

    def reply(self) -> Any:
        """Return the next reply; fail if the server closes first."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.reader.feed(data)

    def message(self) -> tuple[str, dict[str, Any]]:
        """Return the next push as (channel, SandboxEvent)."""
        reply = self.reply()
        assert isinstance(reply, list), reply
        kind, channel, payload = reply
        assert b"message" == kind
        return channel.decode(), json.loads(payload)

    def message_id(self) -> tuple[str, str]:
        """Return the next push as (channel, event id)."""
        channel, event = self.message()
        return channel, event["id"]

    def read_exact(self, size: int) -> bytes:
        """Return exactly *size* raw bytes, bypassing the parser."""
        chunks = bytearray()
        while len(chunks) < size:
            data = self.sock.recv(size - len(chunks))
            if not data:
                raise ConnectionError("the server closed the connection")
            chunks += data
        return bytes(chunks)

    def replies_until_closed(self) -> list[Any]:
        """Read until the server closes; return the complete replies seen before."""
        replies: list[Any] = []
        while True:
            reply = self.reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return replies
            if not data:
                return replies
            self.reader.feed(data)


def error_text(reply: object) -> str:
    """The text of an error reply (hiredis returns, not raises, them)."""
    assert isinstance(reply, hiredis.ReplyError), reply
    return str(reply)


ClientFactory = Callable[..., RespClient]


@pytest.fixture
def connect() -> Iterator[ClientFactory]:
    """Open RESP clients to ``(host, port)``; every one is closed after the test."""
    opened: list[socket.socket] = []

    def factory(
        address: tuple[str, int], *, rcvbuf: int | None = None, nodelay: bool = False
    ) -> RespClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        opened.append(sock)
        if rcvbuf is not None:  # must precede connect() to shrink the TCP window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        return RespClient(sock)

    yield factory
    for sock in opened:
        sock.close()


# --- the server on its own loop, without HTTP ----------------------------------------


class ObservedBroker(LocalBroker):
    """A LocalBroker whose subscription changes other threads can wait for."""

    def __init__(self) -> None:
        super().__init__()
        # The loop thread changes subscriptions under this lock and the test thread
        # reads the counts under it, so a waiter never sees a half-made change.
        self.changed = threading.Condition()

    def subscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Subscribe and wake waiters."""
        with self.changed:
            super().subscribe(key, subscriber)
            self.changed.notify_all()

    def unsubscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Unsubscribe and wake waiters."""
        with self.changed:
            super().unsubscribe(key, subscriber)
            self.changed.notify_all()

    def count(self, key: SandboxKey) -> int:
        """Subscribers of *key*, read safely from another thread."""
        with self.changed:
            return self.subscriber_count(key)

    def wait_for_count(self, key: SandboxKey, expected: int) -> None:
        """Block until *key* has *expected* subscribers."""
        with self.changed:
            reached = self.changed.wait_for(
                lambda: expected == self.subscriber_count(key), TIMEOUT
            )
        assert reached, (expected, self.count(key))


class ServerThread:
    """A PubSubServer with a memory store and an observed broker, on its own loop."""

    def __init__(self, limits: GatewayLimits) -> None:
        self.broker = ObservedBroker()
        self.store = MemoryStore()
        self.auth = Authenticator(SECRET, API_KEYS)
        self.server = PubSubServer(self.broker, self.auth, limits)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="test-pubsub", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return ("127.0.0.1", self.server.port)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def start(self) -> None:
        """Start the loop and the server."""
        self.thread.start()
        self.call(self.server.start("127.0.0.1", 0))

    def stop(self) -> None:
        """Close the server (idempotent) and the loop."""
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()

    def pending_output(self) -> int:
        """Bytes the server holds unsent, summed over its connections."""

        async def run() -> int:
            # Test-only peek at private state: no public API exposes buffer levels.
            conns = self.server._connections
            return sum(c._transport.get_write_buffer_size() for c in conns)

        return self.call(run())

    def token(self, sandbox_id: str, workspace_id: int = WORKSPACE) -> str:
        """An access token the server accepts."""
        return self.auth.issue_token(sandbox_id, workspace_id)

    def publish(
        self, sandbox_id: str, data: object, *, workspace_id: int = WORKSPACE
    ) -> StoredEvent:
        """Store an event and hand it to the broker, as the HTTP handler does."""

        async def run() -> StoredEvent:
            key = (workspace_id, sandbox_id)
            data_json = json.dumps(data, ensure_ascii=False)
            event = await self.store.append(key, "custom", data_json)
            await self.broker.publish(event)
            return event

        return self.call(run())


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    """Start standalone pub/sub servers; each is stopped after the test."""
    started: list[ServerThread] = []

    def factory(**limits: int) -> ServerThread:
        server = ServerThread(GatewayLimits(**limits))
        started.append(server)
        server.start()
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerThread]) -> ServerThread:
    """A standalone pub/sub server with default limits."""
    return server_factory()


# --- the whole gateway ---------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP session, closed after the test."""
    with requests.Session() as session:
        yield session


def pubsub_address(gw: GatewayThread) -> tuple[str, int]:
    """The gateway's pub/sub address."""
    return (gw.pubsub_host, gw.pubsub_port)


def post_event(
    http: requests.Session,
    gw: GatewayThread,
    token: str,
    data: object,
    event_type: str = "custom",
) -> str:
    """Store an event through ``POST /events``; return its id."""
    response = http.post(
        f"{gw.http_url}/events",
        headers={"Authorization": f"Bearer {token}"},
        json={"type": event_type, "data": data},
        timeout=TIMEOUT,
    )
    assert 200 == response.status_code, response.text
    return str(response.json()["data"]["eventId"])


# --- tests ---------------------------------------------------------------------------


class TestPubSubSubscribe:
    """SUBSCRIBE with a valid token, in every accepted form."""

    def test_ok_then_message_framing(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """+OK comes first, then each stored event as a RESP message array."""
        client = connect(pubsub_address(gateway))
        token = gateway.issue_token("sb-1")
        client.send(f"SUBSCRIBE sb-1 {token}\r\n".encode())
        assert b"+OK\r\n" == client.read_exact(5)
        event_id = post_event(http, gateway, token, {"n": 1}, "execution.completed")
        head = b"*3\r\n$7\r\nmessage\r\n$4\r\nsb-1\r\n$"
        assert head == client.read_exact(len(head))
        digits = b""
        while not digits.endswith(b"\r\n"):
            digits += client.read_exact(1)
        payload = client.read_exact(int(digits[:-2]))
        assert b"\r\n" == client.read_exact(2)
        event = json.loads(payload)
        expected = {
            "id": event_id,
            "sandboxId": "sb-1",
            "workspaceId": WORKSPACE,
            "type": "execution.completed",
            "data": {"n": 1},
        }
        assert expected == {k: v for k, v in event.items() if k != "timestamp"}
        assert isinstance(event["timestamp"], int)

    def test_multibulk_subscribe(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """SUBSCRIBE sent as a RESP multibulk array works like the inline form."""
        client = connect(pubsub_address(gateway))
        token = gateway.issue_token("sb-1")
        client.send(
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nsb-1\r\n"
            + f"${len(token)}\r\n{token}\r\n".encode()
        )
        assert b"OK" == client.reply()
        event_id = post_event(http, gateway, token, {})
        assert ("sb-1", event_id) == client.message_id()

    def test_sandbox_id_with_space_via_multibulk(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """A sandbox id that inline framing cannot carry subscribes via multibulk."""
        client = connect(pubsub_address(gateway))
        sandbox = "my sandbox"
        token = gateway.issue_token(sandbox)
        args = [b"subscribe", sandbox.encode(), token.encode()]
        client.send(b"*3\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args))
        assert b"OK" == client.reply()
        post_event(http, gateway, token, {})
        assert sandbox == client.message()[0]

    def test_case_insensitive_and_bare_newline(
        self, gateway: GatewayThread, connect: ClientFactory
    ) -> None:
        """Command names ignore case and an inline command may end in a bare LF."""
        client = connect(pubsub_address(gateway))
        client.send(f"subScribe sb-1 {gateway.issue_token('sb-1')}\n".encode())
        assert b"OK" == client.reply()
        client.send(b"ping\n")
        assert b"PONG" == client.reply()

    def test_split_into_single_byte_writes(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """A SUBSCRIBE written one byte per segment is still understood."""
        client = connect(pubsub_address(gateway), nodelay=True)
        token = gateway.issue_token("sb-1")
        for byte in f"SUBSCRIBE sb-1 {token}\r\n".encode():
            client.send(bytes([byte]))
        assert b"OK" == client.reply()
        event_id = post_event(http, gateway, token, {})
        assert event_id == client.message()[1]["id"]

    def test_several_commands_in_one_write(
        self, gateway: GatewayThread, connect: ClientFactory
    ) -> None:
        """Commands packed into one write are answered in order."""
        client = connect(pubsub_address(gateway))
        token = gateway.issue_token("sb-1")
        client.send(
            f"SUBSCRIBE sb-1 {token}\r\nPING\r\n".encode()
            + b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\nPING again\n"
        )
        expected = [b"OK", b"PONG", b"hi", b"again"]
        assert expected == [client.reply() for _ in range(4)]

    def test_two_sandboxes_on_one_connection(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """One connection may subscribe to two sandboxes; the channel says which."""
        client = connect(pubsub_address(gateway))
        token_1, token_2 = gateway.issue_token("sb-1"), gateway.issue_token("sb-2")
        assert b"OK" == client.subscribe("sb-1", token_1)
        assert b"OK" == client.subscribe("sb-2", token_2)
        id_1 = post_event(http, gateway, token_1, {})
        id_2 = post_event(http, gateway, token_2, {})
        expected = [("sb-1", id_1), ("sb-2", id_2)]
        assert expected == [client.message_id(), client.message_id()]

    def test_repeated_subscribe_delivers_once(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """A repeated SUBSCRIBE answers +OK again but pushes each event once."""
        client = connect(pubsub_address(gateway))
        token = gateway.issue_token("sb-1")
        assert b"OK" == client.subscribe("sb-1", token)
        assert b"OK" == client.subscribe("sb-1", token)
        first = post_event(http, gateway, token, {})
        second = post_event(http, gateway, token, {})
        expected = [first, second]
        assert expected == [client.message()[1]["id"] for _ in range(2)]
        client.send(b"PING\r\n")
        assert b"PONG" == client.reply()

    def test_workspaces_do_not_mix(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """A subscriber sees its own workspace's sandbox, not a namesake in another."""
        client = connect(pubsub_address(gateway))
        other = gateway.issue_token("sb-1", workspace_id=2)
        assert b"OK" == client.subscribe("sb-1", other)
        post_event(http, gateway, gateway.issue_token("sb-1"), {"workspace": 1})
        post_event(http, gateway, other, {"workspace": 2})
        channel, event = client.message()
        assert ("sb-1", 2, {"workspace": 2}) == (
            channel,
            event["workspaceId"],
            event["data"],
        )


class TestPubSubSubscribeRefused:
    """SUBSCRIBE without a valid token for the sandbox: -ERR, then the server closes."""

    @pytest.mark.parametrize(
        ("make_token", "message"),
        [
            pytest.param(
                lambda gw: "not-a-jwt", "ERR Invalid access token", id="garbage"
            ),
            pytest.param(
                lambda gw: issue_token("another-secret-" + "x" * 32, "sb-1", 1),
                "ERR Invalid access token: Signature verification failed",
                id="forged",
            ),
            pytest.param(
                lambda gw: gw.issue_token("sb-1", ttl=-10),
                "ERR Access token has expired",
                id="expired",
            ),
            pytest.param(
                lambda gw: gw.issue_token("sb-2"),
                "ERR Access token is not valid for this sandbox",
                id="other-sandbox",
            ),
        ],
    )
    def test_bad_token(
        self,
        gateway: GatewayThread,
        connect: ClientFactory,
        make_token: Callable[[GatewayThread], str],
        message: str,
    ) -> None:
        """A bad, forged, expired or foreign token gets -ERR and a closed connection."""
        client = connect(pubsub_address(gateway))
        reply = client.subscribe("sb-1", make_token(gateway))
        assert message == error_text(reply)[: len(message)]
        expected: list[Any] = []
        assert expected == client.replies_until_closed()
        assert 0 == gateway.gateway.broker.subscriber_count((WORKSPACE, "sb-1"))

    def test_missing_token(
        self, gateway: GatewayThread, connect: ClientFactory
    ) -> None:
        """SUBSCRIBE with only a sandbox id gets -ERR and a closed connection."""
        client = connect(pubsub_address(gateway))
        client.send(b"SUBSCRIBE sb-1\r\n")
        expected = "ERR wrong number of arguments for 'subscribe' command"
        assert expected == error_text(client.reply())[: len(expected)]
        assert [] == client.replies_until_closed()

    def test_sandbox_id_not_utf8(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """A sandbox id that is not UTF-8 gets -ERR and a closed connection."""
        client = connect(server.address)
        token = server.token("sb-1").encode()
        client.send(
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$2\r\n\xff\xfe\r\n"
            + b"$%d\r\n%b\r\n" % (len(token), token)
        )
        replies = client.replies_until_closed()
        assert 1 == len(replies)
        assert "ERR Invalid sandbox id or access token encoding" == error_text(
            replies[0]
        )


class TestPubSubCommands:
    """PING, UNSUBSCRIBE, QUIT, unknown commands and malformed input."""

    def test_ping(self, server: ServerThread, connect: ClientFactory) -> None:
        """PING answers +PONG; PING <msg> echoes the message as a bulk string."""
        client = connect(server.address)
        client.send(b"PING\r\nPING hello\r\n")
        expected = [b"PONG", b"hello"]
        assert expected == [client.reply(), client.reply()]

    def test_ping_too_many_arguments(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """PING with two arguments is an error that keeps the connection open."""
        client = connect(server.address)
        client.send(b"PING a b\r\nPING\r\n")
        expected = "ERR wrong number of arguments for 'ping' command"
        assert expected == error_text(client.reply())
        assert b"PONG" == client.reply()

    def test_unknown_command(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """An unknown command gets -ERR naming it, and the connection stays open."""
        client = connect(server.address)
        client.send(b"FLUSHALL now\r\nPING\r\n")
        assert "ERR unknown command 'flushall'" == error_text(client.reply())
        assert b"PONG" == client.reply()

    def test_unsubscribe_stops_delivery(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """After UNSUBSCRIBE (+OK) no events arrive and the connection stays open."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        first = server.publish("sb-1", {"n": 1})
        assert first.id == client.message()[1]["id"]
        client.send(b"UNSUBSCRIBE\r\n")
        assert b"OK" == client.reply()
        server.publish("sb-1", {"n": 2})
        client.send(b"PING\r\n")
        assert b"PONG" == client.reply()
        assert 0 == server.broker.count((WORKSPACE, "sb-1"))

    def test_unsubscribe_one_sandbox(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """UNSUBSCRIBE <sandboxId> leaves that sandbox only."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        assert b"OK" == client.subscribe("sb-2", server.token("sb-2"))
        client.send(b"UNSUBSCRIBE sb-1\r\n")
        assert b"OK" == client.reply()
        server.publish("sb-1", {})
        kept = server.publish("sb-2", {})
        assert ("sb-2", kept.id) == client.message_id()

    def test_quit(self, server: ServerThread, connect: ClientFactory) -> None:
        """QUIT answers +OK and closes; later commands are not answered."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        client.send(b"QUIT\r\nPING\r\n")
        assert [b"OK"] == client.replies_until_closed()
        server.broker.wait_for_count((WORKSPACE, "sb-1"), 0)

    def test_malformed_resp(self, server: ServerThread, connect: ClientFactory) -> None:
        """A broken multibulk frame gets -ERR Protocol error and a closed connection."""
        client = connect(server.address)
        client.send(b"*1\r\n$x\r\n")
        replies = client.replies_until_closed()
        assert 1 == len(replies)
        assert "ERR Protocol error: invalid bulk length" == error_text(replies[0])

    def test_client_half_close(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """A client that shuts down its sending side is answered, then disconnected."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        client.send(b"PING\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        assert [b"PONG"] == client.replies_until_closed()
        server.broker.wait_for_count((WORKSPACE, "sb-1"), 0)

    def test_disconnect_unsubscribes(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """A subscriber that disconnects is removed from the broker."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        assert 1 == server.broker.count((WORKSPACE, "sb-1"))
        client.sock.close()
        server.broker.wait_for_count((WORKSPACE, "sb-1"), 0)


class TestPubSubLimits:
    """Oversize commands and subscribers that stop reading."""

    def test_oversize_inline_line(
        self, server_factory: Callable[..., ServerThread], connect: ClientFactory
    ) -> None:
        """A line longer than max_command_bytes gets -ERR and a closed connection."""
        server = server_factory(max_command_bytes=1024)
        client = connect(server.address)
        client.send(b"PING " + b"x" * 2000)
        replies = client.replies_until_closed()
        assert 1 == len(replies)
        assert "ERR Protocol error: too big inline request" == error_text(replies[0])

    def test_oversize_multibulk_frame(
        self, server_factory: Callable[..., ServerThread], connect: ClientFactory
    ) -> None:
        """A bulk string declared over max_command_bytes is refused from its header."""
        server = server_factory(max_command_bytes=1024)
        client = connect(server.address)
        client.send(b"*2\r\n$4\r\nPING\r\n$5000\r\n")
        replies = client.replies_until_closed()
        assert 1 == len(replies)
        assert "ERR Protocol error: too big multibulk request" == error_text(replies[0])

    def test_command_at_default_limit_passes(
        self, gateway: GatewayThread, connect: ClientFactory
    ) -> None:
        """A long but allowed PING message is echoed intact."""
        client = connect(pubsub_address(gateway))
        message = b"y" * 60_000
        client.send(b"PING " + message + b"\r\n")
        assert message == client.reply()

    def test_slow_subscriber_is_cut_off(
        self,
        connect: ClientFactory,
        http: requests.Session,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A subscriber that stops reading is dropped; a fast one gets every event."""
        limits = GatewayLimits(subscriber_buffer_bytes=64 * 1024)
        key = (WORKSPACE, "sb-1")
        with GatewayThread(make_gateway_config(limits=limits)) as gw:
            token = gw.issue_token("sb-1")
            slow = connect(pubsub_address(gw), rcvbuf=4096)
            fast = connect(pubsub_address(gw))
            assert b"OK" == slow.subscribe("sb-1", token)
            assert b"OK" == fast.subscribe("sb-1", token)
            received: list[str] = []
            done = threading.Event()

            def read_fast() -> None:
                # Reads until the marker event: the fast reader never falls behind.
                while True:
                    _, event = fast.message()
                    received.append(event["id"])
                    if event["type"] == "done":
                        done.set()
                        return

            reader = threading.Thread(target=read_fast, name="test-fast-reader")
            reader.start()
            blob = "z" * 16 * 1024
            sent: list[str] = []
            # Each POST returns after the broker delivered the event, so the count is
            # current when read; 2000 x 16 KiB is far beyond any kernel buffering.
            while gw.gateway.broker.subscriber_count(key) == 2 and len(sent) < 2000:
                sent.append(post_event(http, gw, token, {"blob": blob, "i": len(sent)}))
            assert 1 == gw.gateway.broker.subscriber_count(key)
            sent.append(post_event(http, gw, token, {}, "done"))
            assert done.wait(TIMEOUT)
            reader.join(TIMEOUT)
            assert sent == received
            # What the slow one got before the cut is a prefix, in order.
            got = [json.loads(r[2])["id"] for r in slow.replies_until_closed()]
            assert sent[: len(got)] == got
            assert len(got) < len(sent) - 1
        warnings = [r for r in caplog.records if r.name == _pubsub.__name__]
        assert 1 == len(warnings)
        assert logging.WARNING == warnings[0].levelno

    def test_cutoff_warnings_are_rate_limited(
        self,
        server_factory: Callable[..., ServerThread],
        connect: ClientFactory,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Two slow subscribers cut off in a row produce one warning, not two."""
        server = server_factory(subscriber_buffer_bytes=64 * 1024)
        key = (WORKSPACE, "sb-1")
        for _ in range(2):
            client = connect(server.address, rcvbuf=4096)
            assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        published = 0
        while server.broker.count(key) and published < 2000:
            server.publish("sb-1", {"blob": "w" * 32 * 1024})
            published += 1
        assert 0 == server.broker.count(key)
        warnings = [r for r in caplog.records if r.name == _pubsub.__name__]
        assert [logging.WARNING] == [r.levelno for r in warnings]


class TestPubSubFanOut:
    """Every stored event reaches every subscriber of its sandbox, in order, cheaply."""

    def test_order_to_several_subscribers(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """Several subscribers each receive all events in store order."""
        token = gateway.issue_token("sb-1")
        clients = [connect(pubsub_address(gateway)) for _ in range(4)]
        for client in clients:
            assert b"OK" == client.subscribe("sb-1", token)
        sent = [post_event(http, gateway, token, {"i": i}) for i in range(200)]
        for client in clients:
            assert sent == [client.message()[1]["id"] for _ in sent]

    def test_multibyte_utf8(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """Bulk lengths are UTF-8 byte counts for channel and payload alike."""
        sandbox = "sb-ünï-日本"
        token = gateway.issue_token(sandbox)
        client = connect(pubsub_address(gateway))
        assert b"OK" == client.subscribe(sandbox, token)
        data = {"text": "héllo wörld ✓ 🎉 日本語"}
        post_event(http, gateway, token, data)
        channel = sandbox.encode()
        head = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$" % (len(channel), channel)
        assert head == client.read_exact(len(head))
        digits = b""
        while not digits.endswith(b"\r\n"):
            digits += client.read_exact(1)
        payload = client.read_exact(int(digits[:-2]))
        assert b"\r\n" == client.read_exact(2)
        event = json.loads(payload.decode("utf-8"))
        assert (sandbox, data) == (event["sandboxId"], event["data"])

    def test_multibyte_payload_bytes(
        self, server: ServerThread, connect: ClientFactory
    ) -> None:
        """A raw non-ASCII event JSON is framed with its byte length."""
        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        event = server.publish("sb-1", {"t": "ß🎉"})
        body = event.json.encode()
        assert len(body) > len(event.json)
        expected = b"*3\r\n$7\r\nmessage\r\n$4\r\nsb-1\r\n$%d\r\n%b\r\n" % (
            len(body),
            body,
        )
        assert expected == client.read_exact(len(expected))

    def test_many_sandboxes(
        self, gateway: GatewayThread, connect: ClientFactory, http: requests.Session
    ) -> None:
        """Many sandboxes with two subscribers each get only their own events."""
        sandboxes = [f"sb-{i}" for i in range(60)]
        tokens = {sb: gateway.issue_token(sb) for sb in sandboxes}
        clients: dict[str, list[RespClient]] = {}
        for sb in sandboxes:
            clients[sb] = [connect(pubsub_address(gateway)) for _ in range(2)]
            for client in clients[sb]:
                assert b"OK" == client.subscribe(sb, tokens[sb])
        sent = {
            sb: post_event(http, gateway, tokens[sb], {"sb": sb}) for sb in sandboxes
        }
        for sb in sandboxes:
            for client in clients[sb]:
                assert (sb, sent[sb]) == client.message_id()
                client.send(b"PING\r\n")
                assert b"PONG" == client.reply()

    def test_encoded_once_per_event(
        self,
        server: ServerThread,
        connect: ClientFactory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An event going to many subscribers is encoded into a frame only once."""
        calls: list[str] = []
        original = _pubsub.encode_message

        def counting(channel: str, payload: str) -> bytes:
            calls.append(channel)
            return original(channel, payload)

        monkeypatch.setattr(_pubsub, "encode_message", counting)
        clients = [connect(server.address) for _ in range(10)]
        for client in clients:
            assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        events = [server.publish("sb-1", {"i": i}) for i in range(3)]
        for client in clients:
            expected = [e.id for e in events]
            assert expected == [client.message()[1]["id"] for _ in events]
        assert ["sb-1"] * 3 == calls

    def test_delivery_failure_drops_the_connection(
        self,
        server: ServerThread,
        connect: ClientFactory,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A failing delivery never raises into the broker; it drops the connection."""

        def broken(channel: str, payload: str) -> bytes:
            raise RuntimeError("encoder bug")

        client = connect(server.address)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        monkeypatch.setattr(_pubsub, "encode_message", broken)
        server.publish("sb-1", {})  # returns normally
        assert [] == client.replies_until_closed()
        server.broker.wait_for_count((WORKSPACE, "sb-1"), 0)
        assert ["pub/sub delivery failed; dropping the connection"] == [
            r.getMessage() for r in caplog.records if r.name == _pubsub.__name__
        ]


class TestPubSubClose:
    """Shutting the server down."""

    def test_close_disconnects_clients(
        self, server_factory: Callable[..., ServerThread], connect: ClientFactory
    ) -> None:
        """close() unsubscribes and disconnects every client, subscribed or not."""
        server = server_factory()
        subscribed = connect(server.address)
        idle = connect(server.address)
        assert b"OK" == subscribed.subscribe("sb-1", server.token("sb-1"))
        idle.send(b"PING\r\n")
        assert b"PONG" == idle.reply()
        server.call(server.server.close())
        assert [] == subscribed.replies_until_closed()
        assert [] == idle.replies_until_closed()
        assert (0, 0) == (
            server.broker.count((WORKSPACE, "sb-1")),
            server.server.connection_count,
        )
        server.call(server.server.close())  # idempotent

    def test_close_aborts_a_client_that_does_not_read(
        self, server_factory: Callable[..., ServerThread], connect: ClientFactory
    ) -> None:
        """close() returns in bounded time even if a client never drains its output."""
        server = server_factory()
        client = connect(server.address, rcvbuf=4096)
        assert b"OK" == client.subscribe("sb-1", server.token("sb-1"))
        published = 0
        # Until the kernel buffers are full and the server itself holds output; the
        # 8 MiB default cap is not reached first (each event is 32 KiB).
        while server.pending_output() == 0 and published < 2000:
            server.publish("sb-1", {"i": published, "blob": "q" * 32 * 1024})
            published += 1
        assert 0 < server.pending_output()
        assert 1 == server.broker.count((WORKSPACE, "sb-1"))
        started = time.monotonic()
        server.call(server.server.close())
        assert time.monotonic() - started < 5.0
        assert 0 == server.server.connection_count
        client.replies_until_closed()

    def test_gateway_stop_disconnects_subscribers(self, connect: ClientFactory) -> None:
        """Stopping the whole gateway closes its pub/sub connections."""
        with GatewayThread(make_gateway_config()) as gw:
            clients = [connect(pubsub_address(gw)) for _ in range(3)]
            for client in clients:
                assert b"OK" == client.subscribe("sb-1", gw.issue_token("sb-1"))
        for client in clients:
            assert [] == client.replies_until_closed()

    def test_close_before_start(self, server: ServerThread) -> None:
        """close() before start() does nothing, and start() afterwards fails."""
        unstarted = PubSubServer(server.broker, server.auth, GatewayLimits())
        server.call(unstarted.close())
        with pytest.raises(RuntimeError, match="already started"):
            server.call(unstarted.start("127.0.0.1", 0))

    def test_start_twice(self, server: ServerThread) -> None:
        """A server cannot be started a second time."""
        with pytest.raises(RuntimeError, match="already started"):
            server.call(server.server.start("127.0.0.1", 0))

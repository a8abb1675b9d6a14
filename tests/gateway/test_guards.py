"""The gateway under hostile load: idle deadlines, connection caps, bounded output."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import hiredis
import pytest
import requests

from cse_bridge.gateway import GatewayLimits, GatewayThread, issue_token
from cse_bridge.gateway._fd_limit import fit_connection_cap
from cse_bridge.gateway._log_throttle import LogThrottle
from cse_bridge.gateway._loop_errors import throttle_accept_errors

from ..conftest import make_gateway_config
from ..helpers import SECRET, wait_until
from .limited import limited_gateway

SHORT = 0.3
"""The idle timeout of these tests, in seconds."""
TIMEOUT = 10.0


def _open(sockets: list[socket.socket], host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sockets.append(sock)
    return sock


def _http_address(gw: GatewayThread) -> tuple[str, int]:
    return "127.0.0.1", gw.gateway.http_port


def _pubsub_address(gw: GatewayThread) -> tuple[str, int]:
    return gw.pubsub_host, gw.pubsub_port


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed; fails if it never closes."""
    received = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        if not data:
            return bytes(received)
        received += data


def _replies(data: bytes) -> list[Any]:
    reader = hiredis.Reader()
    reader.feed(data)
    replies = []
    while (reply := reader.gets()) is not False:
        replies.append(reply)
    return replies


def _post(gw: GatewayThread, sandbox: str = "sb-1", **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{gw.http_url}/events",
        json={"type": "custom", "data": {}},
        headers={"Authorization": f"Bearer {gw.issue_token(sandbox)}"},
        timeout=TIMEOUT,
        **kwargs,
    )


def _gateway(**limits: Any) -> GatewayThread:
    return GatewayThread(make_gateway_config(limits=GatewayLimits(**limits)))


class TestHttpDeadlines:
    """A connection that asks nothing, or asks too slowly, is closed."""

    def test_silent_connection_is_closed(self, sockets: list[socket.socket]) -> None:
        """A connection that sends nothing is closed after the idle timeout."""
        with _gateway(idle_timeout=SHORT) as gw:
            sock = _open(sockets, *_http_address(gw))
            started = time.monotonic()
            assert b"" == _closed_by_server(sock)
            assert SHORT <= time.monotonic() - started < TIMEOUT
            assert 1 == gw.gateway.rejections.count("timeout", "http")

    def test_slowloris_is_closed(self, sockets: list[socket.socket]) -> None:
        """A request head sent a byte at a time never completes: closed in time."""
        with _gateway(idle_timeout=SHORT) as gw:
            sock = _open(sockets, *_http_address(gw))
            sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
                for _ in range(100):
                    sock.sendall(b"X")
                    time.sleep(SHORT / 10)
            assert time.monotonic() - started < TIMEOUT

    def test_idle_keep_alive_connection_is_closed(
        self, sockets: list[socket.socket]
    ) -> None:
        """After an answer, a keep-alive connection idle past the timeout closes."""
        with _gateway(idle_timeout=SHORT) as gw:
            sock = _open(sockets, *_http_address(gw))
            sock.sendall(b"GET /events/sb-1 HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _closed_by_server(sock)
            assert answer.startswith(b"HTTP/1.1 401")
            # Not counted as a timeout: the client was served.
            assert 0 == gw.gateway.rejections.count("timeout", "http")

    def test_normal_clients_are_unaffected(self) -> None:
        """A keep-alive session that pauses past the timeout still succeeds."""
        with _gateway(idle_timeout=SHORT) as gw, requests.Session() as http:
            for _ in range(3):
                answer = http.post(
                    f"{gw.http_url}/events",
                    json={"type": "custom"},
                    headers={"Authorization": f"Bearer {gw.issue_token('sb-1')}"},
                    timeout=TIMEOUT,
                )
                assert 200 == answer.status_code
                time.sleep(SHORT * 1.5)


class TestHttpConnectionCap:
    """Past the cap, HTTP answers 503 with Retry-After, and recovers."""

    def test_connection_over_the_cap_gets_503(
        self, sockets: list[socket.socket]
    ) -> None:
        """The connection over the cap is answered 503, in the error envelope."""
        with _gateway(max_connections=3) as gw:
            held = [_open(sockets, *_http_address(gw)) for _ in range(3)]
            assert wait_until(
                lambda: 3 == _http_connections(gw), "3 == _http_connections(gw)"
            )
            answer = _post(gw)
            assert 503 == answer.status_code
            assert "1" == answer.headers["Retry-After"]
            assert {
                "success": False,
                "error": "Too many connections; retry later",
            } == answer.json()
            assert 1 == gw.gateway.rejections.count("connection_cap", "http")
            held[0].close()
            assert wait_until(
                lambda: 2 == _http_connections(gw), "2 == _http_connections(gw)"
            )
            assert 200 == _post(gw).status_code

    def test_refusals_are_logged_once_per_interval(
        self, sockets: list[socket.socket], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Twenty refusals write one log line, not twenty."""
        with _gateway(max_connections=1) as gw:
            _open(sockets, *_http_address(gw))
            assert wait_until(
                lambda: 1 == _http_connections(gw), "1 == _http_connections(gw)"
            )
            for _ in range(20):
                assert 503 == _post(gw).status_code
            lines = [r for r in caplog.records if "refusing HTTP" in r.getMessage()]
            assert 1 == len(lines)
            assert 20 == gw.gateway.rejections.count("connection_cap")


def _http_connections(gw: GatewayThread) -> int:
    return gw.gateway.open_connections()["http"]


class TestPubSubConnectionCap:
    """Past the cap, pub/sub refuses as Redis does, and HTTP still answers."""

    def test_connection_over_the_cap_is_refused(
        self, sockets: list[socket.socket]
    ) -> None:
        """The connection over the cap reads Redis's error and is closed."""
        with _gateway(max_connections=3) as gw:
            for _ in range(3):
                _open(sockets, *_pubsub_address(gw))
            assert wait_until(
                lambda: 3 == _pubsub_connections(gw), "3 == _pubsub_connections(gw)"
            )
            refused = _open(sockets, *_pubsub_address(gw))
            replies = _replies(_closed_by_server(refused))
            assert 1 == len(replies)
            assert "ERR max number of clients reached" == str(replies[0])
            assert 200 == _post(gw).status_code
            assert 1 == gw.gateway.rejections.count("connection_cap", "pubsub")


def _pubsub_connections(gw: GatewayThread) -> int:
    return gw.gateway.open_connections()["pubsub"]


class TestPubSubDeadline:
    """A pub/sub connection must SUBSCRIBE in time; a subscribed one may idle."""

    def test_connection_that_never_subscribes_is_closed(
        self, sockets: list[socket.socket]
    ) -> None:
        """PING does not keep an unsubscribed connection: it gets -ERR, then closed."""
        with _gateway(idle_timeout=SHORT) as gw:
            sock = _open(sockets, *_pubsub_address(gw))
            sock.sendall(b"PING\r\n")
            replies = _replies(_closed_by_server(sock))
            assert b"PONG" == replies[0]
            assert str(replies[-1]).startswith("ERR Timed out: no SUBSCRIBE within 0.3")
            assert 1 == gw.gateway.rejections.count("timeout", "pubsub")

    def test_subscribed_connection_outlives_the_deadline(
        self, sockets: list[socket.socket]
    ) -> None:
        """A subscriber stays past the timeout, and the deadline returns on leaving."""
        with _gateway(idle_timeout=SHORT) as gw:
            sock = _open(sockets, *_pubsub_address(gw))
            sock.sendall(f"SUBSCRIBE sb-1 {gw.issue_token('sb-1')}\r\n".encode())
            reader = hiredis.Reader()
            reader.feed(sock.recv(100))
            assert b"OK" == reader.gets()
            time.sleep(SHORT * 3)
            assert 200 == _post(gw).status_code
            data = sock.recv(65536)
            reader.feed(data)
            assert b"message" == reader.gets()[0]
            sock.sendall(b"UNSUBSCRIBE\r\n")
            replies = _replies(_closed_by_server(sock))
            assert b"OK" == replies[0]
            assert str(replies[-1]).startswith("ERR Timed out")


class TestSubscriptionsPerToken:
    """One token holds a bounded number of subscriptions at once."""

    def test_subscription_over_the_cap_is_refused(
        self, sockets: list[socket.socket]
    ) -> None:
        """The third subscription with one token is refused; freed ones count back."""
        with _gateway(max_subscriptions_per_token=2) as gw:
            token = gw.issue_token("sb-1")
            command = f"SUBSCRIBE sb-1 {token}\r\n".encode()
            first, second, third = (
                _open(sockets, *_pubsub_address(gw)) for _ in range(3)
            )
            for sock in (first, second):
                sock.sendall(command)
                assert b"+OK\r\n" == sock.recv(100)
            third.sendall(command)
            replies = _replies(_closed_by_server(third))
            assert "ERR Too many subscriptions with this access token (limit 2)" == str(
                replies[0]
            )
            # Another token of the same sandbox is not held back by this one's cap.
            other = _open(sockets, *_pubsub_address(gw))
            other.sendall(
                f"SUBSCRIBE sb-1 {gw.issue_token('sb-1', ttl=60)}\r\n".encode()
            )
            assert b"+OK\r\n" == other.recv(100)
            first.close()
            fourth = _open(sockets, *_pubsub_address(gw))
            assert wait_until(
                lambda: _subscribe_ok(fourth, command), "_subscribe_ok(fourth, command)"
            )
            assert 1 == gw.gateway.rejections.count("subscription_cap", "pubsub")


def _subscribe_ok(sock: socket.socket, command: bytes) -> bool:
    sock.sendall(command)
    return b"+OK\r\n" == sock.recv(100)


class TestTotalSubscriberOutput:
    """Subscribers that never read hold a bounded total, whatever their number."""

    def test_total_of_stalled_subscribers_is_capped(
        self, sockets: list[socket.socket]
    ) -> None:
        """Ten stalled subscribers under a 1 MiB total: some are cut, memory bounded."""
        total = 1024 * 1024
        with _gateway(
            subscriber_buffers_total_bytes=total, max_subscriptions_per_token=100
        ) as gw:
            token = gw.issue_token("sb-1")
            for _ in range(10):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(TIMEOUT)
                sock.connect(_pubsub_address(gw))
                sockets.append(sock)
                sock.sendall(f"SUBSCRIBE sb-1 {token}\r\n".encode())
                assert b"+OK\r\n" == sock.recv(5)
            server = gw.gateway._pubsub
            assert server is not None
            blob = "z" * 32 * 1024
            most = 0
            with requests.Session() as http:
                for _ in range(200):
                    answer = http.post(
                        f"{gw.http_url}/events",
                        json={"type": "custom", "data": {"blob": blob}},
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=TIMEOUT,
                    )
                    assert 200 == answer.status_code
                    most = max(most, server.buffered_bytes)
            # Never more than the cap and one push over it (the push that tipped it).
            assert most <= total + 64 * 1024
            assert gw.gateway.rejections.count("slow_subscriber", "pubsub") >= 1
            for sock in sockets:
                sock.close()
            assert wait_until(
                lambda: 0 == server.connection_count, "no connection left"
            )
            assert 0 == server.buffered_bytes


class TestDescriptorBudget:
    """The connection cap fits the open file limit, so HTTP keeps answering."""

    @pytest.mark.parametrize(
        ("requested", "limit", "expected"),
        [
            (10_000, None, 10_000),
            (10_000, 1024, 461),
            (10_000, 256, 96),
            (100, 1_048_576, 100),
        ],
    )
    def test_fit_connection_cap(
        self, requested: int, limit: int | None, expected: int
    ) -> None:
        """Two ports' worth plus a reserve fit under the limit."""
        assert expected == fit_connection_cap(requested, limit)


class TestThrottledLogs:
    """Log lines under attack: one per cause per interval, with a count."""

    def test_one_line_per_cause_per_interval(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Repeats within the interval are counted, and the next line says so."""
        now = [0.0]
        throttle = LogThrottle(
            logging.getLogger("test.throttle"), 10.0, clock=lambda: now[0]
        )
        with caplog.at_level(logging.WARNING, "test.throttle"):
            assert throttle.report("a", "failed %s", "x")
            for _ in range(5):
                assert not throttle.report("a", "failed %s", "x")
            assert throttle.report("b", "other")
            now[0] = 10.0
            assert throttle.report("a", "failed %s", "x")
        assert [
            "failed x",
            "other",
            "failed x (5 more since the last report)",
        ] == [r.getMessage() for r in caplog.records]

    def test_failed_accepts_are_throttled(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """asyncio's per-accept report becomes one line; other reports pass."""
        loop = asyncio.new_event_loop()
        try:
            throttle = LogThrottle(logging.getLogger("test.accept"))
            restore = throttle_accept_errors(loop, throttle)
            with caplog.at_level(logging.WARNING):
                for _ in range(100):
                    loop.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": OSError(24, "Too many open files"),
                        }
                    )
                loop.call_exception_handler({"message": "something else"})
            restore()
            assert loop.get_exception_handler() is None
        finally:
            loop.close()
        messages = [r.getMessage() for r in caplog.records]
        assert 1 == sum("cannot accept connections" in m for m in messages)
        assert any("something else" in m for m in messages)
        assert 99 == throttle.unlogged("accept")


class TestDescriptorExhaustion:
    """With few descriptors and a flood of idle sockets, the HTTP API answers."""

    def test_http_answers_while_pubsub_is_flooded(
        self, tmp_path: Path, sockets: list[socket.socket]
    ) -> None:
        """400 idle pub/sub sockets against 256 descriptors: POST still answers."""
        with limited_gateway(tmp_path) as address:
            host, _, port = address["pubsub"].rpartition(":")
            for _ in range(400):
                _open(sockets, host, int(port))
            started = time.monotonic()
            answer = requests.post(
                f"{address['http']}/events",
                json={"type": "custom"},
                headers={"Authorization": f"Bearer {issue_token(SECRET, 'sb-1', 1)}"},
                timeout=3,
            )
            assert 200 == answer.status_code
            assert time.monotonic() - started < 3
            # The ones over the cap (96 per port under 256 descriptors) are told why
            # and closed; the rest wait.
            refused: set[socket.socket] = set()

            def all_refused() -> bool:
                refused.update(
                    sock for sock in sockets if b"max number of clients" in _peek(sock)
                )
                return 400 - 96 <= len(refused)

            assert wait_until(all_refused, "every socket refused")
            assert 400 - 96 == len(refused)


def _peek(sock: socket.socket) -> bytes:
    """What the server sent so far, left unread; b"" if nothing yet."""
    sock.setblocking(False)
    try:
        return sock.recv(100, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
    finally:
        sock.settimeout(TIMEOUT)

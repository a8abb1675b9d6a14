"""The socket thread against raw servers: RESP edge cases, keepalive, reconnects."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from cse_bridge.errors import EventsPubSubError
from cse_bridge.subscriber import MAX_UNPARSED_BYTES, PubSubClient
from cse_bridge.subscriber._session import backoff_delay

from .conftest import WAIT, Recorder
from .servers import event_json, message_frame, raw_server, read_command

MakeClient = Callable[..., PubSubClient]


def _options(port: int) -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "access_token": "t",
        "sandbox_id": "sb-raw",
    }


class TestSessionFraming:
    """Frames as a real server may cut them."""

    def test_one_byte_at_a_time(self, make_client: MakeClient) -> None:
        """A server writing +OK and three pushes one byte per send is understood."""

        def trickle(conn: socket.socket, _: int) -> None:
            read_command(conn)
            data = b"+OK\r\n" + b"".join(message_frame(event_json(i)) for i in range(3))
            for byte in data:
                conn.sendall(bytes([byte]))
            conn.recv(100)

        with raw_server(trickle) as port:
            client = make_client(**_options(port))
            seen = Recorder(client)
            client.connect()
            assert ["evt_0", "evt_1", "evt_2"] == [e.id for e in seen.wait_for(3)]

    def test_garbage_gives_error_and_clean_state(self, make_client: MakeClient) -> None:
        """Garbage after +OK reaches ``error``; the client ends disconnected."""

        go = threading.Event()

        def garbage(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n")
            go.wait(WAIT)
            conn.sendall(b"?garbage\r\n")
            conn.recv(100)

        with raw_server(garbage) as port:
            client = make_client(**_options(port), auto_reconnect=False)
            seen = Recorder(client)
            events = client.stream()
            go.set()
            with pytest.raises(EventsPubSubError, match=r"(?i)protocol error"):
                list(events)
            error = seen.errors.get(timeout=WAIT)
            seen.disconnects.get(timeout=WAIT)
        assert (EventsPubSubError, "disconnected") == (type(error), client.get_state())

    def test_over_the_cap_is_an_error(self, make_client: MakeClient) -> None:
        """A push larger than the 1 MiB cap is refused with an ``error``."""

        def huge(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n")
            conn.sendall(message_frame(event_json(1, size=2 * MAX_UNPARSED_BYTES)))
            conn.recv(100)

        with raw_server(huge) as port:
            client = make_client(**_options(port), auto_reconnect=False)
            seen = Recorder(client)
            client.connect()
            error = seen.errors.get(timeout=WAIT)
        assert "unparsed input" in str(error)

    def test_bad_json_is_reported_and_skipped(self, make_client: MakeClient) -> None:
        """A push whose payload is not an event is reported; the next one arrives."""

        def bad_then_good(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(
                b"+OK\r\n" + message_frame(b"{nope") + message_frame(event_json(2))
            )
            conn.recv(100)

        with raw_server(bad_then_good) as port:
            client = make_client(**_options(port))
            seen = Recorder(client)
            client.connect()
            events = seen.wait_for(1)
            error = seen.errors.get(timeout=WAIT)
        assert (["evt_2"], True) == ([e.id for e in events], "JSON" in str(error))


class TestSessionKeepalive:
    """Built-in keepalive."""

    def test_silent_server_is_detected(self, make_client: MakeClient) -> None:
        """A server that stops answering (even PING) is dropped and reconnected."""
        connections = threading.Semaphore(0)

        def silent(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n")
            connections.release()
            while conn.recv(100):  # swallow PINGs, never answer
                pass

        with raw_server(silent) as port:
            client = make_client(
                **_options(port), keepalive_interval=0.1, keepalive_timeout=0.2
            )
            seen = Recorder(client)
            client.connect()
            error = seen.errors.get(timeout=WAIT)
            reconnected = connections.acquire(timeout=WAIT) and connections.acquire(
                timeout=WAIT
            )
        assert (True, True) == ("keepalive" in str(error), reconnected)

    def test_answered_pings_keep_the_connection(self, make_client: MakeClient) -> None:
        """A server that answers PING keeps one connection through many intervals."""
        pongs = threading.Semaphore(0)

        def answering(conn: socket.socket, _: int) -> None:
            read_command(conn)
            conn.sendall(b"+OK\r\n")
            while data := conn.recv(100):
                for _ in range(data.count(b"PING")):
                    conn.sendall(b"+PONG\r\n")
                    pongs.release()

        with raw_server(answering) as port:
            client = make_client(**_options(port), keepalive_interval=0.05)
            seen = Recorder(client)
            client.connect()
            answered = all(pongs.acquire(timeout=WAIT) for _ in range(5))
            assert (True, "connected", True) == (
                answered,
                client.get_state(),
                seen.errors.empty(),
            )


class TestSessionReconnect:
    """Reconnects and their limits."""

    def test_rejected_token_is_not_retried_forever(
        self, make_client: MakeClient
    ) -> None:
        """After a drop, repeated -ERR answers to reconnects end in state error."""
        gave_up = threading.Event()

        def accept_once(conn: socket.socket, index: int) -> None:
            read_command(conn)
            if index == 0:
                conn.sendall(b"+OK\r\n")
                conn.close()
                return
            conn.sendall(b"-ERR Token expired\r\n")

        with raw_server(accept_once) as port:
            client = make_client(**_options(port), max_rejections=2)
            seen = Recorder(client)
            events = client.stream()
            with pytest.raises(EventsPubSubError, match="Token expired"):
                list(events)
            gave_up.set()
            errors = [seen.errors.get(timeout=WAIT) for _ in range(2)]
        assert ("error", ["ERR Token expired"] * 2) == (
            client.get_state(),
            [str(e) for e in errors],
        )

    def test_backoff_grows_is_capped_and_jittered(self) -> None:
        """Delays start near the base, double, stay under the cap, and vary."""
        delays = [backoff_delay(n, 1.0, 8.0) for n in range(6)]
        assert (True, True, True) == (
            0.75 <= delays[0] <= 1.0,
            1.5 <= delays[1] <= 2.0,
            all(6.0 <= d <= 8.0 for d in delays[3:]),
        )

"""
A draining gateway's ``-ERR`` makes both pub/sub clients reconnect at once.

Behind a balancer, the other gateways are ready: waiting out the backoff (here 30 s)
would only widen the gap the backfill then has to cover. Any other ``-ERR`` that
ends a subscription still waits the backoff.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

from cse_bridge.aio import AsyncPubSubClient
from cse_bridge.gateway import DRAIN_MESSAGE
from cse_bridge.subscriber import PubSubClient
from cse_bridge.subscriber.protocol import SHUTTING_DOWN

from .conftest import WAIT, Recorder
from .servers import event_json, message_frame, raw_server, read_command

SLOW = {"reconnect_delay": 30.0, "max_reconnect_delay": 60.0, "connect_timeout": 5.0}
"""A backoff no test could sit out: a reconnect within seconds skipped it."""
AT_ONCE = 5.0
"""Seconds within which a reconnect counts as at once (a loaded machine)."""


class _Server:
    """Connection 0 is ended with *ending*; later ones get one event and stay."""

    def __init__(self, ending: bytes) -> None:
        self.ending = ending
        self.accepted: list[float] = []
        self.second = threading.Event()
        self.done = threading.Event()

    def __call__(self, conn: socket.socket, index: int) -> None:
        self.accepted.append(time.monotonic())
        read_command(conn)
        if index == 0:
            conn.sendall(b"+OK\r\n")
            time.sleep(0.3)  # subscribed for a while, as before a real drain
            conn.sendall(b"-ERR " + self.ending + b"\r\n")
            conn.close()
            return
        conn.sendall(b"+OK\r\n" + message_frame(event_json(1)))
        self.second.set()
        self.done.wait(WAIT)

    def reconnected_after(self) -> float:
        """Seconds from the first connection to the second."""
        return self.accepted[1] - self.accepted[0]


def _options(port: int) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": port, "access_token": "t", **SLOW}


def test_the_gateway_says_what_the_clients_look_for() -> None:
    """The gateway's drain message begins with the clients' marker."""
    assert DRAIN_MESSAGE.startswith(SHUTTING_DOWN)


def test_threaded_client_reconnects_at_once(
    make_client: Callable[..., PubSubClient],
) -> None:
    """The drain ``-ERR``: the next connection comes at once, not after 22-30 s."""
    server = _Server(DRAIN_MESSAGE.encode())
    with raw_server(server) as port:
        client = make_client(**_options(port), sandbox_id="sb-raw")
        seen = Recorder(client)
        client.connect()
        assert server.second.wait(AT_ONCE), "no reconnect within 5 s"
        assert ["evt_1"] == [event.id for event in seen.wait_for(1)]
        server.done.set()
    assert server.reconnected_after() < AT_ONCE


def test_threaded_client_waits_the_backoff_for_other_endings(
    make_client: Callable[..., PubSubClient],
) -> None:
    """Any other ending ``-ERR`` (a broker that lost its source) waits as before."""
    server = _Server(b"broker connection lost")
    with raw_server(server) as port:
        client = make_client(**_options(port), sandbox_id="sb-raw")
        client.connect()
        assert not server.second.wait(1.0)
        server.done.set()
    assert 1 == len(server.accepted)


@pytest.mark.parametrize(
    ("ending", "reconnects"),
    [(DRAIN_MESSAGE.encode(), True), (b"broker connection lost", False)],
)
def test_asyncio_client_alike(ending: bytes, reconnects: bool) -> None:
    """``AsyncPubSubClient`` follows the same rule."""
    server = _Server(ending)
    with raw_server(server) as port:

        async def main() -> list[str]:
            client = AsyncPubSubClient(sandbox_id="sb-raw", **_options(port))  # type: ignore[arg-type]
            ids: list[str] = []

            async def consume() -> None:
                async for event in client.stream():
                    ids.append(event.id)
                    return

            try:
                await asyncio.wait_for(consume(), AT_ONCE if reconnects else 1.0)
            except asyncio.TimeoutError:
                pass
            finally:
                server.done.set()
                await client.disconnect()
            return ids

        ids = asyncio.run(main())
    assert (["evt_1"] if reconnects else []) == ids
    assert (2 if reconnects else 1) == len(server.accepted)

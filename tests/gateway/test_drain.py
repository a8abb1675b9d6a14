"""SIGTERM to ``cse-bridge gateway`` under load: a graceful drain, nothing lost."""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path

import hiredis
import requests

from cse_bridge.gateway import DRAIN_MESSAGE, GatewayThread

from ..cli.commands import Background, environ
from ..conftest import make_gateway_config
from ..helpers import API_KEY, SECRET, read_all_events, wait_until

TIMEOUT = 10
POSTERS = 4
SUBSCRIBERS = 3


class _Poster(threading.Thread):
    """POSTs events back to back until the gateway stops answering."""

    def __init__(self, url: str, token: str, index: int) -> None:
        super().__init__(name=f"test-poster-{index}")
        self.url, self.token, self.index = url, token, index
        self.acknowledged: list[str] = []

    def run(self) -> None:
        with requests.Session() as http:
            for i in range(100_000):
                try:
                    answer = http.post(
                        f"{self.url}/events",
                        json={"type": "custom", "data": {"p": self.index, "i": i}},
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=TIMEOUT,
                    )
                except requests.ConnectionError:
                    return  # the gateway stopped accepting: load moves elsewhere
                if answer.status_code != 200:
                    return
                self.acknowledged.append(answer.json()["data"]["eventId"])


class _Subscriber(threading.Thread):
    """A raw pub/sub client: records every reply, then None at end of stream."""

    def __init__(self, host: str, port: int, token: str, index: int) -> None:
        super().__init__(name=f"test-subscriber-{index}")
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.sendall(f"SUBSCRIBE sb-load {token}\r\n".encode())
        self.replies: list[object] = []
        self.subscribed = threading.Event()

    def run(self) -> None:
        reader = hiredis.Reader()
        try:
            while True:
                while (reply := reader.gets()) is not False:
                    self.replies.append(reply)
                    self.subscribed.set()
                data = self.sock.recv(65536)
                if not data:
                    self.replies.append(None)  # EOF
                    return
                reader.feed(data)
        finally:
            self.sock.close()


def test_sigterm_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Every 200 is stored; each subscriber reads -ERR then EOF; the exit is 0."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    ready = tmp_path / "ready.json"
    gateway = Background(
        "gateway",
        "--port=0",
        "--pubsub-port=0",
        f"--store={store}",
        f"--secret={SECRET}",
        f"--api-key={API_KEY}=1",
        f"--ready-file={ready}",
        "--drain-timeout=5",
        env=environ(),
    )
    try:
        wait_until(ready.exists, "the gateway's ready file", timeout=20)
        where = json.loads(ready.read_text())
        host, _, port = where["pubsub"].rpartition(":")
        with GatewayThread(make_gateway_config(secret=SECRET)) as minting:
            token = minting.issue_token("sb-load")
        subscribers = [
            _Subscriber(host, int(port), token, i) for i in range(SUBSCRIBERS)
        ]
        for subscriber in subscribers:
            subscriber.start()
            assert subscriber.subscribed.wait(TIMEOUT)
        posters = [_Poster(where["http"], token, i) for i in range(POSTERS)]
        for poster in posters:
            poster.start()
        wait_until(
            lambda: sum(len(p.acknowledged) for p in posters) >= 100,
            "100 events acknowledged under load",
        )
        code = gateway.stop(signal.SIGTERM)
        for thread in [*posters, *subscribers]:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    finally:
        gateway.kill()
    assert 0 == code, gateway.err
    assert "draining" in gateway.err
    for subscriber in subscribers:
        *_, last, eof = subscriber.replies
        assert isinstance(last, hiredis.ReplyError), subscriber.replies[-3:]
        assert f"ERR {DRAIN_MESSAGE}" == str(last)
        assert eof is None
    acknowledged = [event for p in posters for event in p.acknowledged]
    with GatewayThread(make_gateway_config(store)) as again:
        stored = {event["id"] for event in read_all_events(again.http_url, "sb-load")}
    assert [] == [event for event in acknowledged if event not in stored]
    assert len(acknowledged) >= 100

"""Several gateway processes on one Redis: one event log, one fan-out, no loss."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import requests

from cse_bridge.engine import BatchEngine, EventItem, EventsSink
from cse_bridge.gateway import GatewayThread

from ..conftest import make_gateway_config
from ..helpers import (
    API_KEY,
    SECRET,
    WORKSPACE,
    next_reply,
    raw_subscribe,
    read_all_events,
)
from .redis_fixtures import OwnRedis, unique_redis_url

SANDBOX = "sandbox-scale"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A store URL on the shared Redis under a fresh prefix, deleted afterwards."""
    with unique_redis_url() as url:
        yield url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A running private Redis that the test may restart; stopped afterwards."""
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(redis_url: str) -> Iterator[tuple[GatewayThread, GatewayThread]]:
    """Gateways A and B on one Redis prefix."""
    with (
        GatewayThread(make_gateway_config(redis_url)) as a,
        GatewayThread(make_gateway_config(redis_url)) as b,
    ):
        yield a, b


def post(url: str, token: str, index: int) -> requests.Response:
    """POST one numbered event."""
    return requests.post(
        f"{url}/events",
        json={"type": "log.info", "data": {"i": index}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def subscribe(gw: GatewayThread, token: str) -> tuple[socket.socket, hiredis.Reader]:
    """A raw pub/sub subscriber of SANDBOX on *gw*, past its +OK."""
    return raw_subscribe(gw.pubsub_host, gw.pubsub_port, SANDBOX, token)


class TestTwoGateways:
    def test_stored_through_a_read_and_pushed_through_b(
        self, pair: tuple[GatewayThread, GatewayThread]
    ) -> None:
        """Events posted to A and B are read through B and pushed to B in order."""
        a, b = pair
        token = a.issue_token(SANDBOX)
        sock, reader = subscribe(b, token)
        with sock:
            acked = [post((a, b)[i % 2].http_url, token, i).json() for i in range(60)]
            pushed = [json.loads(next_reply(sock, reader)[2]) for _ in range(60)]
        read = read_all_events(b.http_url, SANDBOX)
        ids = [event["data"]["eventId"] for event in acked]
        assert ids == [event["id"] for event in read]
        assert ids == [event["id"] for event in pushed]
        assert list(range(60)) == [event["data"]["i"] for event in pushed]


class TestBridgeOverTwoGateways:
    def test_two_engines_lose_nothing(
        self, pair: tuple[GatewayThread, GatewayThread]
    ) -> None:
        """Two engines, one per gateway URL, deliver every record exactly once."""
        a, b = pair
        engines = [
            BatchEngine(
                EventsSink(gw.http_url, gw.issue_token(SANDBOX)), schedule_delay=0.01
            )
            for gw in (a, b)
        ]
        try:
            for i in range(1000):
                engines[i % 2].submit(EventItem("log.info", {"i": i}))
            assert [True, True] == [engine.flush(20) for engine in engines]
        finally:
            for engine in engines:
                engine.shutdown(2)
        read = read_all_events(a.http_url, SANDBOX)
        assert list(range(1000)) == sorted(event["data"]["i"] for event in read)


class TestKilledGateway:
    def test_sigkill_loses_no_acknowledged_event(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """Every event A acknowledged before SIGKILL is readable through B."""
        ready = tmp_path / "ready.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cse_bridge",
                "gateway",
                "--store",
                redis_url,
                "--port",
                "0",
                "--pubsub-port",
                "0",
                "--secret",
                SECRET,
                "--api-key",
                f"{API_KEY}={WORKSPACE}",
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # "serving ...": the ready file is written first
            a_url = json.loads(ready.read_text())["http"]
            with GatewayThread(make_gateway_config(redis_url)) as b:
                acked = self._load_and_kill(a_url, b.issue_token(SANDBOX), proc)
                read = {event["id"] for event in read_all_events(b.http_url, SANDBOX)}
        finally:
            proc.kill()
            proc.communicate()
        assert 200 <= len(acked)
        assert set() == acked - read

    @staticmethod
    def _load_and_kill(url: str, token: str, proc: subprocess.Popen[str]) -> set[str]:
        acked: set[str] = set()
        lock = threading.Lock()
        enough = threading.Event()

        def client(start: int) -> None:
            with requests.Session() as session:
                for i in range(start, start + 100_000, 4):
                    try:
                        answer = session.post(
                            f"{url}/events",
                            json={"type": "log.info", "data": {"i": i}},
                            headers={"Authorization": f"Bearer {token}"},
                            timeout=5,
                        )
                    except requests.RequestException:
                        return  # A is gone
                    if answer.status_code == 200:
                        with lock:
                            acked.add(answer.json()["data"]["eventId"])
                            if len(acked) >= 200:
                                enough.set()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        assert enough.wait(20)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: four requests in flight
        for thread in threads:
            thread.join(10)
        return acked


class TestRedisRestart:
    def test_503_meanwhile_then_every_record_delivered(
        self, own_redis: OwnRedis
    ) -> None:
        """While Redis restarts the gateway answers 503; the engine delivers all."""
        config = make_gateway_config(f"{own_redis.url}?prefix=restart")
        with GatewayThread(config) as gw:
            token = gw.issue_token(SANDBOX)
            sock, reader = subscribe(gw, token)
            engine = BatchEngine(EventsSink(gw.http_url, token), schedule_delay=0.01)
            try:
                for i in range(300):
                    engine.submit(EventItem("log.info", {"i": i}))
                assert engine.flush(10)
                own_redis.stop()
                for i in range(300, 600):
                    engine.submit(EventItem("log.info", {"i": i}))
                during = [
                    post(gw.http_url, token, -1),
                    requests.get(
                        f"{gw.http_url}/events/{SANDBOX}",
                        headers={"X-API-Key": API_KEY},
                        timeout=10,
                    ),
                ]
                with sock:
                    told = next_reply(sock, reader)
                    while isinstance(told, list):  # pushes of the first 300 events
                        told = next_reply(sock, reader)
                    closed = next_reply(sock, reader)
                own_redis.start()
                assert engine.flush(20)
            finally:
                engine.shutdown(2)
            read = read_all_events(gw.http_url, SANDBOX)
        assert [(503, "1"), (503, "1")] == [
            (r.status_code, r.headers.get("Retry-After")) for r in during
        ]
        assert isinstance(told, hiredis.ReplyError)
        assert closed is None
        assert list(range(600)) == sorted(event["data"]["i"] for event in read)

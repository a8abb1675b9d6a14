"""/healthz and /readyz: through a Redis outage and a drain, without credentials."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cse_bridge.gateway import GatewayThread

from ..conftest import make_gateway_config
from ..helpers import read_all_events, sample, scrape, wait_until
from .redis_fixtures import OwnRedis

TIMEOUT = 10


def probe(http: requests.Session | None, gw_url: str, path: str) -> requests.Response:
    """GET a probe (on *http*'s keep-alive connection when given)."""
    getter = requests.get if http is None else http.get
    return getter(f"{gw_url}{path}", timeout=TIMEOUT)


def wait_for_status(
    http: requests.Session | None, gw_url: str, path: str, status: int, what: str
) -> requests.Response:
    """Probe until the answer has *status* (bounded); return that answer."""
    # A list: a requests.Response with a 5xx status is falsy itself.
    found = wait_until(
        lambda: [r for r in [probe(http, gw_url, path)] if r.status_code == status],
        what,
    )
    return found[0]


class TestProbes:
    """The probes of a gateway that is up."""

    def test_both_answer_200_without_credentials(
        self, any_gateway: GatewayThread
    ) -> None:
        """A fresh gateway is live and ready; each probe says why in JSON."""
        health = probe(None, any_gateway.http_url, "/healthz")
        ready = probe(None, any_gateway.http_url, "/readyz")
        assert (200, "ok") == (health.status_code, health.json()["status"])
        assert 200 == ready.status_code
        assert {
            "status": "ready",
            "store": "ok",
            "http": True,
            "pubsub": True,
            "draining": False,
        } == ready.json()
        assert "no-store" == ready.headers["Cache-Control"]

    def test_probes_are_not_events_routes(self, gateway: GatewayThread) -> None:
        """POST /healthz is a 405 in the events API's envelope; /events is intact."""
        answer = requests.post(f"{gateway.http_url}/healthz", timeout=TIMEOUT)
        assert 405 == answer.status_code
        assert False is answer.json()["success"]
        unauthorised = requests.post(f"{gateway.http_url}/events", timeout=TIMEOUT)
        assert 401 == unauthorised.status_code


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A private redis-server this test may stop and start again."""
    server = OwnRedis(tmp_path, persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TestReadinessDuringRedisOutage:
    """A gateway on a Redis that goes away and comes back."""

    def test_ready_follows_redis(self, own_redis: OwnRedis) -> None:
        """Ready; Redis stops: 503 naming the store, POST 503 counted; back: 200."""
        config = make_gateway_config(f"{own_redis.url}?prefix=cse-probe")
        with GatewayThread(config) as gw:
            token = gw.issue_token("sb-outage")
            assert 200 == probe(None, gw.http_url, "/readyz").status_code
            own_redis.stop()
            down = wait_for_status(
                None, gw.http_url, "/readyz", 503, "readyz 503 while Redis is down"
            )
            assert "unavailable" == down.json()["status"]
            assert "ok" != down.json()["store"]
            assert 200 == probe(None, gw.http_url, "/healthz").status_code
            answer = requests.post(
                f"{gw.http_url}/events",
                json={"type": "custom", "data": {}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT,
            )
            assert 503 == answer.status_code
            page = scrape(f"{gw.http_url}/metrics")
            assert 1 == sample(
                page,
                "cse_gateway_store_errors_total",
                operation="append",
                kind="unavailable",
            )
            own_redis.start()
            wait_for_status(
                None, gw.http_url, "/readyz", 200, "readyz 200 once Redis is back"
            )


class _SlowPost:
    """A POST whose body is half sent: a request in flight until ``finish``."""

    def __init__(self, gw: GatewayThread, token: str) -> None:
        self.body = b'{"type":"custom","data":{"slow":true}}'
        self.sock = socket.create_connection(
            (gw.pubsub_host, int(gw.http_url.rsplit(":", 1)[1])), timeout=TIMEOUT
        )
        head = (
            f"POST /events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
            "\r\n"
        ).encode()
        self.sock.sendall(head + self.body[:10])

    def finish(self) -> bytes:
        """Send the rest; return the answer's head and body."""
        self.sock.sendall(self.body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        self.sock.close()
        return answer


class TestDrain:
    """Probes, new connections and requests in flight while a gateway drains."""

    def test_drain_waits_for_requests_in_flight(
        self, sqlite_url: str, session: requests.Session
    ) -> None:
        """Draining: readyz 503, new connections refused, the slow POST stored."""
        config = make_gateway_config(sqlite_url)
        gw = GatewayThread(config).start()
        try:
            token = gw.issue_token("sb-drain")
            assert 200 == probe(session, gw.http_url, "/healthz").status_code
            slow = _SlowPost(gw, token)
            wait_until(
                lambda: (
                    sample(
                        scrape(f"{gw.http_url}/metrics"),
                        "cse_gateway_http_in_flight_requests",
                    )
                    == 2
                ),  # the slow POST and the scrape itself
                "the slow POST in flight",
            )
            result: list[bool] = []
            drainer = threading.Thread(
                target=lambda: result.append(gw.drain(timeout=TIMEOUT)),
                name="test-drain",
            )
            drainer.start()
            # The keep-alive connection still gets answers, with Connection: close.
            ready = wait_for_status(
                session, gw.http_url, "/readyz", 503, "readyz 503 while draining"
            )
            assert True is ready.json()["draining"]
            assert "close" == ready.headers["Connection"]
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{gw.http_url}/healthz", timeout=TIMEOUT)
            assert drainer.is_alive()  # still waiting for the slow POST
            answer = slow.finish()
            drainer.join(TIMEOUT)
            assert [True] == result
            assert answer.startswith(b"HTTP/1.1 200"), answer
            event_id = answer.split(b'"eventId":"', 1)[1].split(b'"', 1)[0].decode()
        finally:
            gw.stop()
        with GatewayThread(config) as again:
            stored = [e["id"] for e in read_all_events(again.http_url, "sb-drain")]
        assert [event_id] == stored

    def test_drain_timeout_cuts_a_request_that_never_ends(
        self, gateway: GatewayThread
    ) -> None:
        """A body that never completes holds the drain for its timeout only."""
        slow = _SlowPost(gateway, gateway.issue_token("sb-stuck"))
        try:
            wait_until(
                lambda: (
                    sample(
                        scrape(f"{gateway.http_url}/metrics"),
                        "cse_gateway_http_in_flight_requests",
                    )
                    == 2
                ),
                "the stuck POST in flight",
            )
            assert False is gateway.drain(timeout=0.3)
        finally:
            slow.sock.close()

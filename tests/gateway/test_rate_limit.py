"""``--rate-limit``: events per second per sandbox, 429 with Retry-After past it."""

from __future__ import annotations

import time

import requests

from cse_bridge.engine import BatchEngine, EventItem, EventsSink
from cse_bridge.gateway import GatewayLimits, GatewayThread
from cse_bridge.gateway._rate_limiter import RateLimiter

from ..conftest import make_gateway_config
from ..helpers import read_all_events


def _post(http: requests.Session, gw: GatewayThread, sandbox: str) -> requests.Response:
    return http.post(
        f"{gw.http_url}/events",
        json={"type": "custom"},
        headers={"Authorization": f"Bearer {gw.issue_token(sandbox)}"},
        timeout=10,
    )


class TestRateLimiter:
    """The token bucket, on a fake clock."""

    def test_burst_then_rate(self) -> None:
        """A full bucket allows the burst; then one event per 1/rate seconds."""
        now = [0.0]
        limiter = RateLimiter(10.0, 3, clock=lambda: now[0])
        assert [0.0, 0.0, 0.0] == [limiter.acquire("a") for _ in range(3)]
        assert 0.1 == limiter.acquire("a")
        assert 0.0 == limiter.acquire("b")  # another sandbox has its own bucket
        now[0] = 0.1
        assert 0.0 == limiter.acquire("a")
        assert 0.0 < limiter.acquire("a")
        now[0] = 100.0  # refilled, but never past the burst
        assert [0.0, 0.0, 0.0] == [limiter.acquire("a") for _ in range(3)]
        assert 0.0 < limiter.acquire("a")


class TestHttpRateLimit:
    """Past its rate, a sandbox gets 429 with Retry-After; others are unaffected."""

    def test_past_the_burst_answers_429(self) -> None:
        """The burst passes, the next event is 429, another sandbox still stores."""
        limits = GatewayLimits(rate_limit=1.0, rate_burst=5)
        with (
            GatewayThread(make_gateway_config(limits=limits)) as gw,
            requests.Session() as http,
        ):
            assert [200] * 5 == [_post(http, gw, "sb-1").status_code for _ in range(5)]
            refused = _post(http, gw, "sb-1")
            assert 429 == refused.status_code
            assert "1" == refused.headers["Retry-After"]
            assert {
                "success": False,
                "error": "Rate limit exceeded: at most 1 events per second per sandbox",
            } == refused.json()
            assert 200 == _post(http, gw, "sb-2").status_code
            assert 1 == gw.gateway.rejections.count("rate_limit", "http")
            assert 5 == len(read_all_events(gw.http_url, "sb-1"))


class TestEngineThroughRateLimit:
    """The engine delivers every record through a rate limit, without a storm."""

    def test_every_record_arrives(self) -> None:
        """300 records at 50 per second: all stored, few 429s, the rate held."""
        limits = GatewayLimits(rate_limit=50.0)  # a burst of two seconds' worth
        with GatewayThread(make_gateway_config(limits=limits)) as gw:
            sink = EventsSink(gw.http_url, gw.issue_token("sb-rate"))
            engine = BatchEngine(sink, schedule_delay=0.02)
            started = time.monotonic()
            try:
                for index in range(300):
                    engine.submit(EventItem("log.info", {"i": index}))
                assert engine.flush(30.0)
            finally:
                assert engine.shutdown(5.0)
            elapsed = time.monotonic() - started
            stats = engine.stats()
            events = read_all_events(gw.http_url, "sb-rate")
            refused = gw.gateway.rejections.count("rate_limit")
        assert list(range(300)) == sorted(e["data"]["i"] for e in events)
        assert 300 == stats.sent
        assert {} == dict(stats.dropped)
        # No storm: the engine waits Retry-After out, so refusals stay few.
        assert refused < 100, (refused, elapsed)
        assert elapsed >= 3.0  # the limit held: 200 events past the burst at 50/s

"""The gateway's /metrics: counters move by exactly what the test did."""

from __future__ import annotations

import json
import socket
import threading

import requests

from cse_bridge.gateway import GatewayLimits, GatewayThread

from ..conftest import make_gateway_config
from ..helpers import API_KEY, WORKSPACE, next_reply, raw_subscribe, sample, scrape

TIMEOUT = 10


def post(
    http: requests.Session, gw: GatewayThread, token: str, data: object
) -> requests.Response:
    """POST one ``custom`` event with *token*."""
    return http.post(
        f"{gw.http_url}/events",
        json={"type": "custom", "data": data},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def metrics(gw: GatewayThread) -> dict:
    """The gateway's /metrics page, parsed."""
    return scrape(f"{gw.http_url}/metrics")


class TestGatewayMetricsHttp:
    """Requests, stored events and bytes, latencies and rejections."""

    def test_ten_posts_move_every_counter_by_ten(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """10 accepted POSTs: +10 requests, events, latency samples; bytes as stored."""
        gw = any_gateway
        token = gw.issue_token("sb-metrics")
        before = metrics(gw)
        for i in range(10):
            assert (
                200 == post(session, gw, token, {"i": i, "text": "x" * i}).status_code
            )
        after = metrics(gw)
        stored = session.get(
            f"{gw.http_url}/events/sb-metrics",
            headers={"X-API-Key": API_KEY},
            timeout=TIMEOUT,
        ).json()["data"]["events"]

        def delta(name: str, **labels: str) -> float:
            return sample(after, name, **labels) - sample(before, name, 0.0, **labels)

        assert 10 == delta(
            "cse_gateway_http_requests_total",
            route="/events",
            method="POST",
            status="200",
        )
        assert 10 == delta("cse_gateway_events_stored_total")
        assert 10 == delta("cse_gateway_post_event_duration_seconds_count")
        assert 10 == delta(
            "cse_gateway_store_duration_seconds_count", operation="append"
        )
        # The stored JSON is compact and ASCII: what json.dumps writes back.
        size = sum(len(json.dumps(e, separators=(",", ":"))) for e in stored)
        assert size == delta("cse_gateway_stored_bytes_total")
        assert 0 < sample(after, "cse_gateway_post_event_duration_seconds_sum")

    def test_rejections_are_counted_by_cause(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Two bad tokens and one oversized body: auth +2, size +1, nothing stored."""
        token = gateway.issue_token("sb-reject")
        before = metrics(gateway)
        assert 401 == post(session, gateway, "not-a-token", {}).status_code
        assert 401 == post(session, gateway, "", {}).status_code
        big = "z" * (GatewayLimits().max_body_bytes + 10)
        assert 413 == post(session, gateway, token, {"blob": big}).status_code
        after = metrics(gateway)
        for cause, count in (("auth", 2), ("size", 1)):
            assert count == sample(
                after, "cse_gateway_rejected_requests_total", port="http", cause=cause
            ) - sample(
                before, "cse_gateway_rejected_requests_total", port="http", cause=cause
            )
        assert sample(before, "cse_gateway_events_stored_total") == sample(
            after, "cse_gateway_events_stored_total"
        )

    def test_routes_are_templates_and_no_sandbox_id_is_a_label(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Reads of two sandboxes count under one route; the ids appear nowhere."""
        for sandbox in ("sb-secret-one", "sb-secret-two"):
            answer = session.get(
                f"{gateway.http_url}/events/{sandbox}",
                headers={"X-API-Key": API_KEY},
                timeout=TIMEOUT,
            )
            assert 200 == answer.status_code
        assert 404 == session.get(f"{gateway.http_url}/nowhere", timeout=5).status_code
        page = session.get(f"{gateway.http_url}/metrics", timeout=TIMEOUT)
        assert page.headers["Content-Type"].startswith("text/plain")
        assert "sb-secret" not in page.text
        after = metrics(gateway)
        assert 2 == sample(
            after,
            "cse_gateway_http_requests_total",
            route="/events/{sandboxId}",
            method="GET",
            status="200",
        )
        assert 1 == sample(
            after,
            "cse_gateway_http_requests_total",
            route="unmatched",
            method="GET",
            status="404",
        )

    def test_two_gateways_in_one_process_count_apart(
        self, session: requests.Session
    ) -> None:
        """Each gateway has its own registry: a POST to one leaves the other at 0."""
        with (
            GatewayThread(make_gateway_config()) as one,
            GatewayThread(make_gateway_config()) as two,
        ):
            assert 200 == post(session, one, one.issue_token("sb"), {}).status_code
            assert 1 == sample(metrics(one), "cse_gateway_events_stored_total")
            assert 0 == sample(metrics(two), "cse_gateway_events_stored_total")


class TestGatewayMetricsPubSub:
    """Connections, subscribers, pushes, slow subscribers and refused tokens."""

    def test_pushes_subscribers_and_connections(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Two subscribers and one idle connection; 5 events make 10 pushes."""
        token = gateway.issue_token("sb-push")
        host, port = gateway.pubsub_host, gateway.pubsub_port
        first, first_reader = raw_subscribe(host, port, "sb-push", token)
        second, second_reader = raw_subscribe(host, port, "sb-push", token)
        idle = socket.create_connection((host, port), timeout=TIMEOUT)
        try:
            before = metrics(gateway)
            for i in range(5):
                assert 200 == post(session, gateway, token, {"i": i}).status_code
            for sock, reader in ((first, first_reader), (second, second_reader)):
                for _ in range(5):
                    assert b"message" == next_reply(sock, reader)[0]
            after = metrics(gateway)
        finally:
            for sock in (first, second, idle):
                sock.close()
        assert 10 == sample(after, "cse_gateway_pubsub_pushes_total") - sample(
            before, "cse_gateway_pubsub_pushes_total"
        )
        assert 2 == sample(after, "cse_gateway_pubsub_subscribers")
        assert 3 == sample(after, "cse_gateway_open_connections", port="pubsub")
        assert 1 <= sample(after, "cse_gateway_open_connections", port="http")

    def test_refused_subscription_counts_as_auth_rejection(
        self, gateway: GatewayThread
    ) -> None:
        """A SUBSCRIBE with another sandbox's token is refused and counted once."""
        with socket.create_connection(
            (gateway.pubsub_host, gateway.pubsub_port), timeout=TIMEOUT
        ) as sock:
            token = gateway.issue_token("sb-other")
            sock.sendall(f"SUBSCRIBE sb-mine {token}\r\n".encode())
            assert sock.recv(1024).startswith(b"-ERR")
        assert 1 == sample(
            metrics(gateway),
            "cse_gateway_rejected_requests_total",
            port="pubsub",
            cause="auth",
        )

    def test_slow_subscriber_cut_off_is_counted(
        self, session: requests.Session
    ) -> None:
        """A subscriber that never reads is cut off once its buffer is full: +1."""
        limits = GatewayLimits(subscriber_buffer_bytes=64 * 1024)
        key = (WORKSPACE, "sb-slow")
        with GatewayThread(make_gateway_config(limits=limits)) as gw:
            token = gw.issue_token("sb-slow")
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect((gw.pubsub_host, gw.pubsub_port))
            slow.sendall(f"SUBSCRIBE sb-slow {token}\r\n".encode())
            try:
                assert slow.recv(5) == b"+OK\r\n"
                blob = "z" * 16 * 1024
                sent = 0
                # Each POST returns after the broker delivered the event.
                while gw.gateway.broker.subscriber_count(key) and sent < 2000:
                    assert 200 == post(session, gw, token, {"blob": blob}).status_code
                    sent += 1
                assert 0 == gw.gateway.broker.subscriber_count(key)
                after = metrics(gw)
            finally:
                slow.close()
        assert 1 == sample(after, "cse_gateway_pubsub_slow_disconnects_total")
        assert sent - 1 <= sample(after, "cse_gateway_pubsub_pushes_total") <= sent


def test_metrics_scrape_is_safe_while_posting(gateway: GatewayThread) -> None:
    """Scrapes interleaved with POSTs from another thread all parse; none fails."""
    token = gateway.issue_token("sb-busy")
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    assert 200 == post(http, gateway, token, {}).status_code
                except BaseException as exc:  # handed to the test thread
                    errors.append(exc)
                    return

    worker = threading.Thread(target=load, name="test-load")
    worker.start()
    try:
        counts = [
            sample(metrics(gateway), "cse_gateway_events_stored_total")
            for _ in range(20)
        ]
    finally:
        stop.set()
        worker.join(TIMEOUT)
    assert [] == errors
    assert counts == sorted(counts)


def test_other_protections_count_under_the_same_metric(gateway: GatewayThread) -> None:
    """Every refusal the gateway counts in ``Gateway.rejections`` is on the page."""
    # Called from the test thread: the gateway is idle, so nothing races the counts.
    reject = gateway.gateway.rejections.add
    reject("pubsub", "connection_cap")
    reject("http", "rate_limit")
    reject("http", "rate_limit")
    page = metrics(gateway)
    assert 1 == sample(
        page,
        "cse_gateway_rejected_requests_total",
        port="pubsub",
        cause="connection_cap",
    )
    assert 2 == sample(
        page, "cse_gateway_rejected_requests_total", port="http", cause="rate_limit"
    )

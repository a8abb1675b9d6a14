"""The size limits of the HTTP API and of pub/sub subscribers agree."""

from __future__ import annotations

import json
import queue

import requests

from cse_bridge.gateway import GatewayLimits, GatewayThread
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import MAX_UNPARSED_BYTES, PubSubClient

from ..helpers import API_KEY

LIMITS = GatewayLimits()


def _post(gateway: GatewayThread, sandbox_id: str, body: bytes) -> requests.Response:
    return requests.post(
        f"{gateway.http_url}/events",
        data=body,
        headers={
            "Authorization": f"Bearer {gateway.issue_token(sandbox_id)}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )


def _body_with_data_of(size: int) -> bytes:
    """A body whose ``data`` encodes to exactly *size* bytes."""
    overhead = len(json.dumps({"text": ""}, separators=(",", ":")))
    data = {"text": "x" * (size - overhead)}
    return json.dumps({"type": "custom", "data": data}, separators=(",", ":")).encode()


class TestStoredEventLimit:
    """``data`` is bounded once stored, so every pushed frame fits a subscriber."""

    def test_largest_event_reaches_a_subscriber(self, gateway: GatewayThread) -> None:
        """An event with the largest accepted data is pushed within the 1 MiB cap."""
        sandbox_id = "sb-largest"
        received: queue.SimpleQueue[SandboxEvent] = queue.SimpleQueue()
        errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()
        client = PubSubClient(
            host=gateway.pubsub_host,
            port=gateway.pubsub_port,
            access_token=gateway.issue_token(sandbox_id),
            sandbox_id=sandbox_id,
            api_key=API_KEY,
            gateway_url=gateway.http_url,
        )
        client.on("event", received.put)
        client.on("error", errors.put)
        client.connect(timeout=10)
        try:
            answer = _post(
                gateway, sandbox_id, _body_with_data_of(LIMITS.max_data_bytes)
            )
            assert 200 == answer.status_code
            event = received.get(timeout=10)
            assert answer.json()["data"]["eventId"] == event.id
            assert LIMITS.max_data_bytes - 11 == len(event.data["text"])
            assert errors.empty()
            assert MAX_UNPARSED_BYTES >= len(event.data["text"]) + 1024
        finally:
            client.disconnect()

    def test_data_over_the_limit_answers_413(self, gateway: GatewayThread) -> None:
        """Data one byte over the stored limit is refused with 413 and the envelope."""
        answer = _post(
            gateway, "sb-over", _body_with_data_of(LIMITS.max_data_bytes + 1)
        )
        assert 413 == answer.status_code
        assert {
            "success": False,
            "error": f"'data' is larger than {LIMITS.max_data_bytes} bytes once stored",
        } == answer.json()

    def test_data_that_grows_when_reencoded_is_bounded(
        self, gateway: GatewayThread
    ) -> None:
        """Numbers written short (1e5) that re-encode longer cannot exceed the limit."""
        count = (LIMITS.max_body_bytes - 64) // 4
        body = '{"type":"custom","data":{"n":[' + ",".join(["1e5"] * count) + "]}}"
        answer = _post(gateway, "sb-grow", body.encode())
        assert 413 == answer.status_code

    def test_lone_surrogates_are_escaped_alone(self, gateway: GatewayThread) -> None:
        """A lone surrogate is stored as a \\u escape; other text keeps its bytes."""
        body = '{"type":"custom","data":{"s":"\\ud800é"}}'.encode()
        answer = _post(gateway, "sb-surrogate", body)
        assert 200 == answer.status_code
        events = requests.get(
            f"{gateway.http_url}/events/sb-surrogate",
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        assert '"data":{"s":"\\ud800é"}' in events.text

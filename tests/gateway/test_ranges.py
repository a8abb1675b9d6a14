"""Out-of-range claims and keys: a clear 4xx or a refusal at start, never a 500."""

from __future__ import annotations

import json
import queue

import jwt
import pytest
import requests

from cse_bridge.gateway import (
    MAX_WORKSPACE_ID,
    Gateway,
    GatewayLimits,
    GatewayThread,
    issue_token,
)
from cse_bridge.gateway._resp import encode_message
from cse_bridge.gateway._validation import push_overhead
from cse_bridge.gateway.stores._base import encode_event_json
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import MAX_UNPARSED_BYTES, PubSubClient

from ..conftest import make_gateway_config
from ..helpers import SECRET

LIMITS = GatewayLimits()


def _post(
    gw: GatewayThread, token: str, body: bytes | None = None
) -> requests.Response:
    return requests.post(
        f"{gw.http_url}/events",
        data=body if body is not None else b'{"type":"custom"}',
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


class TestWorkspaceRange:
    """Workspace ids outside 0..2**53-1 are refused before any store sees them."""

    @pytest.mark.parametrize(
        "workspace", [2**63, 2**64 + 1, -1, 10**30, MAX_WORKSPACE_ID + 1]
    )
    def test_token_with_out_of_range_workspace_is_401(
        self, any_gateway: GatewayThread, workspace: int
    ) -> None:
        """A signed token with a huge or negative workspace answers 401, not 500."""
        token = jwt.encode(
            {"sandboxId": "sb-1", "workspaceId": workspace}, SECRET, algorithm="HS256"
        )
        answer = _post(any_gateway, token)
        assert 401 == answer.status_code
        assert (
            "Invalid access token: the workspaceId claim must be an integer from 0 "
            f"to {MAX_WORKSPACE_ID}"
        ) == answer.json()["error"]
        assert 1 == any_gateway.gateway.rejections.count("auth", "http")

    def test_largest_workspace_is_stored(self, any_gateway: GatewayThread) -> None:
        """The largest workspace id is stored and read back exactly."""
        token = any_gateway.issue_token("sb-1", MAX_WORKSPACE_ID)
        answer = _post(any_gateway, token)
        assert 200 == answer.status_code

    @pytest.mark.parametrize("exp", [10**400, 1e308 * 10])
    def test_token_with_infinite_expiry_is_401(
        self, gateway: GatewayThread, exp: float
    ) -> None:
        """An ``exp`` no float can hold is refused, not a crash."""
        payload = '{"sandboxId":"sb-1","workspaceId":1,"exp":%s}' % (
            "1e999" if isinstance(exp, float) else str(exp)
        )
        token = jwt.api_jws.encode(payload.encode(), SECRET, algorithm="HS256")
        answer = _post(gateway, token)
        assert 401 == answer.status_code

    def test_api_key_out_of_range_is_refused_at_start(self) -> None:
        """A key for workspace 99999999999999999999 stops the gateway from starting."""
        with pytest.raises(ValueError, match="workspace id must be an integer"):
            Gateway(make_gateway_config(api_keys={"k": 99999999999999999999}))

    @pytest.mark.parametrize(
        ("sandbox", "workspace", "message"),
        [
            ("sb", 2**63, "workspace id must be an integer from 0"),
            ("sb", -1, "workspace id must be an integer from 0"),
            ("x" * 257, 1, "sandbox id must be 1 to 256 characters"),
            ("", 1, "sandbox id must be 1 to 256 characters"),
            ("\udcff", 1, "sandbox id must be valid UTF-8"),
        ],
    )
    def test_issue_token_validates_what_it_signs(
        self, sandbox: str, workspace: int, message: str
    ) -> None:
        """A token the gateway would refuse is never signed."""
        with pytest.raises(ValueError, match=message):
            issue_token(SECRET, sandbox, workspace)


NON_BMP_ID = "\U0001f600" * 256
"""A sandbox id whose push is as large as one can be: 4 UTF-8 bytes a character in
the channel, a 12-byte escape each in the event JSON."""


class TestPushSize:
    """Every push fits the subscriber's 1 MiB, whatever the sandbox id and type."""

    @pytest.mark.parametrize(
        ("sandbox", "event_type"),
        [
            ("sb-1", "custom"),
            ("s" * 256, "t" * 256),
            (NON_BMP_ID, "\U0001f600" * 256),
            ("é" * 256, "\ud800" * 256),
        ],
    )
    def test_overhead_bounds_the_real_push(self, sandbox: str, event_type: str) -> None:
        """``push_overhead`` is at least what a push adds around its data."""
        data = '{"x":1}'
        event = encode_event_json(
            "evt_" + "f" * 32, (MAX_WORKSPACE_ID, sandbox), event_type, data, 2**63 - 1
        )
        frame = encode_message(sandbox, event)
        assert len(frame) - len(data) <= push_overhead(sandbox, event_type)
        assert len(frame) - len(data) + 16 > push_overhead(sandbox, event_type)

    def test_ascii_ids_keep_the_documented_margin(self) -> None:
        """With ASCII ids and types of up to 256 characters, the 4 KiB margin holds."""
        overhead = push_overhead("s" * 256, "t" * 256)
        assert LIMITS.max_data_bytes + overhead <= LIMITS.max_push_bytes

    def test_non_bmp_ids_near_the_limit_answer_413(
        self, gateway: GatewayThread
    ) -> None:
        """Data that fits alone but not in a push with such ids is refused with 413."""
        event_type = "\U0001f600" * 256
        room = LIMITS.max_push_bytes - push_overhead(NON_BMP_ID, event_type)
        token = gateway.issue_token(NON_BMP_ID)
        answer = _post(gateway, token, _body(event_type, room + 1))
        assert 413 == answer.status_code
        assert (
            f"'data' is larger than {room} bytes, the most that fits one pub/sub push "
            "with this sandbox id and type"
        ) == answer.json()["error"]

    def test_largest_non_bmp_event_reaches_a_subscriber(
        self, gateway: GatewayThread
    ) -> None:
        """The largest event accepted with such ids arrives whole within 1 MiB."""
        event_type = "\U0001f600" * 256
        room = LIMITS.max_push_bytes - push_overhead(NON_BMP_ID, event_type)
        received: queue.SimpleQueue[SandboxEvent] = queue.SimpleQueue()
        errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()
        token = gateway.issue_token(NON_BMP_ID)
        client = PubSubClient(
            host=gateway.pubsub_host,
            port=gateway.pubsub_port,
            access_token=token,
            sandbox_id=NON_BMP_ID,
            max_buffer_bytes=MAX_UNPARSED_BYTES,
        )
        client.on("event", received.put)
        client.on("error", errors.put)
        client.connect(timeout=10)
        try:
            answer = _post(gateway, token, _body(event_type, room))
            assert 200 == answer.status_code
            event = received.get(timeout=10)
            assert answer.json()["data"]["eventId"] == event.id
            assert errors.empty()
        finally:
            client.disconnect()


def _body(event_type: str, data_bytes: int) -> bytes:
    """A body whose ``data`` encodes to exactly *data_bytes* bytes."""
    overhead = len('{"text":""}')
    data = {"text": "x" * (data_bytes - overhead)}
    return json.dumps({"type": event_type, "data": data}).encode()

"""``PubSubClient`` against the real gateway: events, states, listeners, streams."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cse_bridge.errors import EventsAuthError, EventsPubSubError
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import PubSubClient, create_pubsub_client

from .conftest import WAIT, Recorder, gateway_options, producer

MakeClient = Callable[..., PubSubClient]


def _threads() -> set[str]:
    return {
        t.name for t in threading.enumerate() if t.name.startswith("cse-bridge-pub")
    }


class TestPubSubClientEvents:
    """Live events on the real gateway."""

    def test_events_arrive_in_order_as_stored(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """Every stored event arrives once, in order, with its stored id, type, data."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        seen = Recorder(client)
        client.connect()
        with producer(gateway, sandbox_id) as http:
            for i in range(30):
                http.store_event(
                    "log.info" if i % 2 else "custom", {"i": i, "s": "é\r\n"}
                )
            stored = http.get_events(sandbox_id, limit=1000)
        assert stored == seen.wait_for(30)

    def test_factory_and_env_configuration(
        self,
        gateway: GatewayThread,
        sandbox_id: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Host, port and token come from the env; the token names the sandbox."""
        monkeypatch.setenv("COMPUTESDK_PUBSUB_HOST", gateway.pubsub_host)
        monkeypatch.setenv("COMPUTESDK_PUBSUB_PORT", str(gateway.pubsub_port))
        monkeypatch.setenv("COMPUTESDK_ACCESS_TOKEN", gateway.issue_token(sandbox_id))
        client = create_pubsub_client()
        try:
            client.connect()
            assert (sandbox_id, "connected") == (client.sandbox_id, client.get_state())
        finally:
            client.disconnect()


class TestPubSubClientConnect:
    """``connect()`` outcomes."""

    def test_bad_token_raises(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """A token the gateway rejects raises ``EventsPubSubError``; state is error."""
        options = gateway_options(gateway, sandbox_id)
        client = make_client(
            **{**options, "access_token": "not.a.token"}, sandbox_id=sandbox_id
        )
        with pytest.raises(EventsPubSubError, match=r"(?i)token"):
            client.connect()
        assert "error" == client.get_state()

    def test_refused_raises(self, make_client: MakeClient) -> None:
        """A closed port raises ``EventsPubSubError``."""
        client = make_client(host="127.0.0.1", port=1, access_token="t", sandbox_id="s")
        with pytest.raises(EventsPubSubError, match="failed"):
            client.connect()

    def test_missing_token_sends_nothing(
        self, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a token ``connect()`` raises ``EventsAuthError``."""
        monkeypatch.delenv("COMPUTESDK_ACCESS_TOKEN", raising=False)
        with pytest.raises(EventsAuthError):
            make_client(host="127.0.0.1", port=1).connect()


class TestPubSubClientPingDisconnect:
    """``ping()`` and ``disconnect()``."""

    def test_ping_answers(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """``ping()`` returns a round trip under the timeout."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        client.connect()
        assert 0 < client.ping(timeout=WAIT) < WAIT

    def test_disconnect_stops_everything(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """After ``disconnect()`` the state is disconnected and no thread is left."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        seen = Recorder(client)
        client.connect()
        client.disconnect()
        seen.disconnects.get(timeout=WAIT)
        with pytest.raises(EventsPubSubError):
            client.ping()
        assert ("disconnected", set()) == (client.get_state(), _threads())


class TestPubSubClientListeners:
    """Listeners run on the dispatcher; their failures are reported, not fatal."""

    def test_raising_listener_is_reported_and_stream_goes_on(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """A listener that raises reaches ``error``; later events still arrive."""
        client = make_client(**gateway_options(gateway, sandbox_id))

        def explode(event: SandboxEvent) -> None:
            if event.data["i"] == 0:
                raise RuntimeError("boom")

        client.on("event", explode)
        seen = Recorder(client)
        client.connect()
        with producer(gateway, sandbox_id) as http:
            for i in range(3):
                http.store_event("custom", {"i": i})
        error = seen.errors.get(timeout=WAIT)
        assert ("boom", [0, 1, 2]) == (
            str(error),
            [e.data["i"] for e in seen.wait_for(3)],
        )

    def test_unknown_event_name(self, make_client: MakeClient) -> None:
        """``on()`` with an unknown name raises ValueError."""
        with pytest.raises(ValueError, match="unknown event"):
            make_client(access_token="t", sandbox_id="s").on("message", print)

    def test_removed_listener_is_not_called(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """The function ``on()`` returns removes the listener."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        calls: list[SandboxEvent] = []
        client.on("event", calls.append)()
        seen = Recorder(client)
        client.connect()
        with producer(gateway, sandbox_id) as http:
            http.store_event("custom")
        seen.wait_for(1)
        assert [] == calls


class TestPubSubClientStream:
    """The iterator form and the context manager."""

    def test_stream_in_a_with_block(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """``with client:`` connects and disconnects; ``stream()`` yields events."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        got = []
        with client, producer(gateway, sandbox_id) as http:
            events = client.stream()
            for i in range(3):
                http.store_event("custom", {"i": i})
            for event in events:
                got.append(event.data["i"])
                if len(got) == 3:
                    break
        assert ([0, 1, 2], "disconnected") == (got, client.get_state())

    def test_stream_ends_on_disconnect(
        self, gateway: GatewayThread, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """A ``stream()`` loop ends when another thread disconnects the client."""
        client = make_client(**gateway_options(gateway, sandbox_id))
        seen = Recorder(client)
        client.connect()
        threading.Thread(
            target=lambda: (seen.connects.get(timeout=WAIT), client.disconnect())
        ).start()
        assert [] == list(client.stream())

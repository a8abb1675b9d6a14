"""Unit tests of EventsClient: configuration, validation and what goes over the wire."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import cse_bridge
from cse_bridge import (
    EventsAuthError,
    EventsClient,
    EventsError,
    SandboxEvent,
    StoreEventResult,
    create_events_client,
)
from cse_bridge import config as cfg
from cse_bridge.client._client import MAX_LIMIT

from .servers import Recorded, RecordingServer, Reply, silent_listener

pytestmark = pytest.mark.usefixtures("clean_config_env")


STORED = {
    "eventId": "evt_1",
    "sandboxId": "sandbox-1",
    "type": "custom",
    "timestamp": 1732780000123,
}


def event_json(n: int, *, sandbox: str = "sandbox-1", type: str = "custom") -> dict:
    """The wire form of a SandboxEvent numbered *n*."""
    return {
        "id": f"evt_{n}",
        "sandboxId": sandbox,
        "workspaceId": 1,
        "type": type,
        "data": {"n": n},
        "timestamp": 1_700_000_000_000 + n,
    }


def events_reply(events: list[dict], sandbox: str = "sandbox-1") -> Reply:
    """A valid GET /events answer."""
    return Reply.envelope(
        {"sandboxId": sandbox, "events": events, "count": len(events)}
    )


@pytest.fixture
def store_server() -> Iterator[RecordingServer]:
    """A recorder that answers POST /events like a gateway."""
    with RecordingServer(Reply.envelope(STORED)) as server:
        yield server


@pytest.fixture
def events_server() -> Iterator[RecordingServer]:
    """A recorder that answers GET /events/{id} with two events."""
    with RecordingServer(events_reply([event_json(1), event_json(2)])) as server:
        yield server


class TestEventsClientConfiguration:
    """Arguments beat environment variables, which beat defaults."""

    def test_defaults(self) -> None:
        """Without arguments or environment the client targets the public gateway."""
        client = EventsClient()
        expected = cfg.DEFAULT_GATEWAY_URL
        assert expected == client.gateway_url
        expected = cfg.DEFAULT_TIMEOUT
        assert expected == client.timeout
        expected = 10
        assert expected == client.pool_size
        expected = (False, False)
        assert expected == (client.has_api_key, client.has_access_token)

    def test_environment_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """COMPUTESDK_* variables configure a client built without arguments."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, "http://env.example:9/")
        monkeypatch.setenv(cfg.ENV_API_KEY, "env-key")
        monkeypatch.setenv(cfg.ENV_ACCESS_TOKEN, "env-token")
        client = EventsClient()
        expected = "http://env.example:9"
        assert expected == client.gateway_url
        expected = (True, True)
        assert expected == (client.has_api_key, client.has_access_token)

    def test_arguments_beat_environment(
        self, monkeypatch: pytest.MonkeyPatch, store_server: RecordingServer
    ) -> None:
        """An explicit argument wins over the environment, as the wire shows."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, "http://unused.invalid")
        monkeypatch.setenv(cfg.ENV_ACCESS_TOKEN, "env-token")
        with EventsClient(gateway_url=store_server.url, access_token="arg") as client:
            client.store_event("custom")
        expected = "Bearer arg"
        assert expected == store_server.last.headers["Authorization"]

    def test_create_events_client_passes_everything(self) -> None:
        """create_events_client builds an EventsClient with the given settings."""
        client = create_events_client(
            gateway_url="https://gw.example/base/",
            api_key="k",
            access_token="t",
            timeout=2.5,
            pool_size=3,
        )
        assert isinstance(client, EventsClient)
        expected = "https://gw.example/base"
        assert expected == client.gateway_url
        expected = (2.5, 3)
        assert expected == (client.timeout, client.pool_size)
        expected = (True, True)
        assert expected == (client.has_api_key, client.has_access_token)

    def test_pool_is_sized(self) -> None:
        """The adapter keeps pool_size keep-alive connections and never retries."""
        client = EventsClient(gateway_url="http://gw.example", pool_size=7)
        adapter = client._session.get_adapter("http://gw.example/events")
        expected = 7
        assert expected == adapter._pool_maxsize  # type: ignore[attr-defined]
        expected = 0
        assert expected == adapter.max_retries.total  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"gateway_url": "ftp://gw.example"}, ValueError),
            ({"gateway_url": "gw.example"}, ValueError),
            ({"gateway_url": "http://gw.example/?q=1"}, ValueError),
            ({"gateway_url": 5}, TypeError),
            ({"timeout": 0}, ValueError),
            ({"timeout": -1.0}, ValueError),
            ({"timeout": math.inf}, ValueError),
            ({"timeout": math.nan}, ValueError),
            ({"timeout": "5"}, TypeError),
            ({"timeout": True}, TypeError),
            ({"pool_size": 0}, ValueError),
            ({"pool_size": 2.0}, TypeError),
            ({"api_key": 123}, TypeError),
            ({"api_key": "key\r\nX-Evil: 1"}, ValueError),
            ({"access_token": " padded "}, ValueError),
        ],
    )
    def test_bad_arguments_raise_when_built(
        self, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        """Invalid settings raise TypeError or ValueError from the constructor."""
        with pytest.raises(error):
            EventsClient(**kwargs)

    def test_bad_environment_value_raises_when_built(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A malformed COMPUTESDK_GATEWAY_URL is reported when the client is built."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, "not a url")
        with pytest.raises(ValueError, match="gateway_url"):
            EventsClient()

    def test_repr_hides_secrets(self) -> None:
        """repr() says whether a key and token are set but never shows them."""
        text = repr(EventsClient(api_key="secret-key", access_token="secret-token"))
        assert "secret" not in text
        assert "api_key='set'" in text

    def test_user_agent(self, store_server: RecordingServer) -> None:
        """Requests carry a cse-bridge/<version> User-Agent."""
        with EventsClient(gateway_url=store_server.url, access_token="t") as client:
            client.store_event("custom")
        expected = f"cse-bridge/{cse_bridge.__version__}"
        assert expected == store_server.last.headers["User-Agent"]

    def test_closed_client_refuses_calls(self, store_server: RecordingServer) -> None:
        """After close(), which is idempotent, a call raises RuntimeError unsent."""
        client = EventsClient(gateway_url=store_server.url, access_token="t")
        client.close()
        client.close()
        with pytest.raises(RuntimeError, match="closed"):
            client.store_event("custom")
        expected = []
        assert expected == store_server.requests


class TestStoreEvent:
    """store_event: the request and result of docs/protocol.md#protocol-store-event."""

    def test_wire_format(self, store_server: RecordingServer) -> None:
        """It POSTs {type, data} as JSON with the token as a bearer credential."""
        with EventsClient(gateway_url=store_server.url, access_token="tok") as client:
            result = client.store_event("execution.completed", {"exitCode": 0})
        request = store_server.last
        expected = ("POST", "/events")
        assert expected == (request.method, request.path)
        expected = "Bearer tok"
        assert expected == request.headers["Authorization"]
        expected = "application/json"
        assert expected == request.headers["Content-Type"]
        expected = {"type": "execution.completed", "data": {"exitCode": 0}}
        assert expected == request.json()
        assert StoreEventResult("evt_1", "sandbox-1", "custom", 1732780000123) == result

    def test_data_defaults_to_empty_object(self, store_server: RecordingServer) -> None:
        """Without data the body carries data: {}, like the official client."""
        with EventsClient(gateway_url=store_server.url, access_token="t") as client:
            client.store_event("custom")
        expected = {"type": "custom", "data": {}}
        assert expected == store_server.last.json()

    def test_unicode_is_sent_as_utf8(self, store_server: RecordingServer) -> None:
        """Non-ASCII data arrives intact."""
        with EventsClient(gateway_url=store_server.url, access_token="t") as client:
            client.store_event("custom", {"text": "héllo ✓ 日本"})
        expected = {"text": "héllo ✓ 日本"}
        assert expected == store_server.last.json()["data"]

    def test_lone_surrogate_is_escaped(self, store_server: RecordingServer) -> None:
        """Text UTF-8 cannot carry is sent as a JSON escape instead of failing."""
        with EventsClient(gateway_url=store_server.url, access_token="t") as client:
            client.store_event("custom", {"text": "a\ud800b"})
        expected = b'{"type":"custom","data":{"text":"a\\ud800b"}}'
        assert expected == store_server.last.body

    def test_json_body_is_compact(self, store_server: RecordingServer) -> None:
        """The request body is compact JSON."""
        with EventsClient(gateway_url=store_server.url, access_token="t") as client:
            client.store_event("custom", {"a": [1, 2]})
        expected = b'{"type":"custom","data":{"a":[1,2]}}'
        assert expected == store_server.last.body

    def test_missing_token_raises_before_sending(self) -> None:
        """Without an access token it raises EventsAuthError and never connects."""
        with silent_listener() as listener:
            client = EventsClient(gateway_url=listener.url)
            with pytest.raises(EventsAuthError, match="Access token required"):
                client.store_event("custom", {"a": 1})
            assert False is listener.connection_attempted()

    def test_set_access_token(self, store_server: RecordingServer) -> None:
        """set_access_token replaces the token; None removes it."""
        with EventsClient(gateway_url=store_server.url, access_token="old") as client:
            client.set_access_token("new")
            client.store_event("custom")
            expected = "Bearer new"
            assert expected == store_server.last.headers["Authorization"]
            client.set_access_token(None)
            with pytest.raises(EventsAuthError):
                client.store_event("custom")
        expected = 1
        assert expected == len(store_server.requests)

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ((None,), TypeError),
            ((3,), TypeError),
            (("",), ValueError),
            (("custom", [1, 2]), TypeError),
            (("custom", "text"), TypeError),
            (("custom", {"x": math.nan}), ValueError),
            (("custom", {"x": math.inf}), ValueError),
            (("custom", {"x": object()}), TypeError),
            (("custom", {"x": {1, 2}}), TypeError),
            (("custom", {("a", "b"): 1}), TypeError),
        ],
    )
    def test_invalid_arguments_raise_before_sending(
        self, args: tuple[Any, ...], error: type[Exception]
    ) -> None:
        """Bad type or data raises TypeError/ValueError and nothing is sent."""
        with silent_listener() as listener:
            client = EventsClient(gateway_url=listener.url, access_token="t")
            with pytest.raises(error):
                client.store_event(*args)
            assert False is listener.connection_attempted()

    def test_cyclic_data_raises_before_sending(self) -> None:
        """A reference cycle in data raises ValueError without sending."""
        data: dict[str, Any] = {}
        data["self"] = data
        with silent_listener() as listener:
            client = EventsClient(gateway_url=listener.url, access_token="t")
            with pytest.raises(ValueError, match="Circular"):
                client.store_event("custom", data)
            assert False is listener.connection_attempted()


class TestGetEvents:
    """get_events: query and result of docs/protocol.md#protocol-retrieve-events."""

    def test_wire_format_and_result(self, events_server: RecordingServer) -> None:
        """It GETs /events/{id} with X-API-Key and returns the events in order."""
        with EventsClient(gateway_url=events_server.url, api_key="key") as client:
            events = client.get_events("sandbox-1")
        request = events_server.last
        expected = ("GET", "/events/sandbox-1")
        assert expected == (request.method, request.path)
        expected = "key"
        assert expected == request.headers["X-API-Key"]
        assert "Authorization" not in request.headers
        expected = {}
        assert expected == request.query
        expected = [SandboxEvent.from_json(event_json(n)) for n in (1, 2)]
        assert expected == events

    def test_filters_are_sent(self, events_server: RecordingServer) -> None:
        """type, since and limit become query parameters."""
        with EventsClient(gateway_url=events_server.url, api_key="key") as client:
            client.get_events("sandbox-1", type="log.error", since=123, limit=50)
        expected = {"type": ["log.error"], "since": ["123"], "limit": ["50"]}
        assert expected == events_server.last.query

    @pytest.mark.parametrize(
        ("limit", "sent"),
        [(-5, "1"), (0, "1"), (1, "1"), (500, "500"), (1000, "1000"), (5000, "1000")],
    )
    def test_limit_is_clamped(
        self, events_server: RecordingServer, limit: int, sent: str
    ) -> None:
        """limit is clamped into 1..1000 before it goes on the wire."""
        with EventsClient(gateway_url=events_server.url, api_key="key") as client:
            client.get_events("sandbox-1", limit=limit)
        assert [sent] == events_server.last.query["limit"]

    def test_since_accepts_aware_datetime(self, events_server: RecordingServer) -> None:
        """An aware datetime is sent as milliseconds since the epoch."""
        when = datetime(2024, 11, 28, 7, 46, 40, 123000, tzinfo=timezone.utc)
        with EventsClient(gateway_url=events_server.url, api_key="key") as client:
            client.get_events("sandbox-1", since=when)
            client.get_events(
                "sandbox-1", since=when.astimezone(timezone(timedelta(hours=5)))
            )
        expected = [["1732780000123"], ["1732780000123"]]
        assert expected == [r.query["since"] for r in events_server.requests]

    def test_sandbox_id_is_quoted(self, events_server: RecordingServer) -> None:
        """The sandbox id is percent-encoded into a single path segment."""
        with EventsClient(gateway_url=events_server.url, api_key="key") as client:
            client.get_events("a/b c?d#e%")
        expected = "/events/a%2Fb%20c%3Fd%23e%25"
        assert expected == events_server.last.path

    def test_gateway_url_path_prefix_is_kept(self) -> None:
        """A gateway URL with a path prefix puts /events below it."""
        with RecordingServer(events_reply([])) as server:
            client = EventsClient(gateway_url=server.url + "/prefix/", api_key="k")
            client.get_events("s")
            expected = "/prefix/events/s"
            assert expected == server.last.path

    def test_missing_key_raises_before_sending(self) -> None:
        """Without an API key it raises EventsAuthError and never connects."""
        with silent_listener() as listener:
            client = EventsClient(gateway_url=listener.url, access_token="t")
            with pytest.raises(EventsAuthError, match="API key required"):
                client.get_events("sandbox-1")
            assert False is listener.connection_attempted()

    def test_set_api_key(self, events_server: RecordingServer) -> None:
        """set_api_key replaces the key on the next request."""
        with EventsClient(gateway_url=events_server.url, api_key="old") as client:
            client.set_api_key("new")
            client.get_events("sandbox-1")
        expected = "new"
        assert expected == events_server.last.headers["X-API-Key"]

    @pytest.mark.parametrize(
        ("sandbox_id", "kwargs", "error"),
        [
            ("", {}, ValueError),
            (".", {}, ValueError),
            ("..", {}, ValueError),
            (None, {}, TypeError),
            ("s", {"type": ""}, ValueError),
            ("s", {"type": 5}, TypeError),
            ("s", {"since": -1}, ValueError),
            ("s", {"since": 1.5}, TypeError),
            ("s", {"since": "0"}, TypeError),
            ("s", {"since": True}, TypeError),
            ("s", {"since": datetime(2024, 1, 1)}, ValueError),
            ("s", {"limit": 10.0}, TypeError),
            ("s", {"limit": False}, TypeError),
        ],
    )
    def test_invalid_arguments_raise_before_sending(
        self, sandbox_id: Any, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        """Bad arguments raise TypeError/ValueError and nothing is sent."""
        with silent_listener() as listener:
            client = EventsClient(gateway_url=listener.url, api_key="key")
            with pytest.raises(error):
                client.get_events(sandbox_id, **kwargs)
            assert False is listener.connection_attempted()

    @pytest.mark.parametrize(
        "data",
        [
            {"sandboxId": "s", "count": 0},
            {"sandboxId": "s", "events": {"not": "a list"}, "count": 0},
            ["not", "an", "object"],
            {"events": [{"id": "evt_1"}]},
            {"events": ["text"]},
        ],
    )
    def test_invalid_events_payload(self, data: Any) -> None:
        """A 2xx envelope whose data is not a list of events raises EventsError."""
        with RecordingServer(Reply.envelope(data)) as server:
            client = EventsClient(gateway_url=server.url, api_key="key")
            with pytest.raises(EventsError, match="Invalid response from server"):
                client.get_events("s")


class PagingGateway:
    """Answers GET /events like the gateway's store does, over a fixed event list."""

    def __init__(self, events: list[dict]) -> None:
        self.events = events

    def __call__(self, request: Recorded) -> Reply:
        limit = int(request.query.get("limit", ["100"])[0])
        if "since" in request.query:
            since = int(request.query["since"][0])
            page = [e for e in self.events if e["timestamp"] > since][:limit]
        else:
            page = self.events[-limit:]
        return events_reply(page)


class TestIterEvents:
    """iter_events pages forward until it has caught up."""

    def test_pages_with_last_timestamp(self) -> None:
        """Each page asks for events after the previous page's last timestamp."""
        events = [event_json(n) for n in range(1, 6)]
        with RecordingServer(PagingGateway(events)) as server:
            client = EventsClient(gateway_url=server.url, api_key="key")
            got = list(client.iter_events("sandbox-1", page_size=2))
        assert [SandboxEvent.from_json(e) for e in events] == got
        sent = [(r.query["since"][0], r.query["limit"][0]) for r in server.requests]
        base = 1_700_000_000_000
        assert [("0", "2"), (str(base + 2), "2"), (str(base + 4), "2")] == sent

    def test_exact_multiple_needs_one_empty_page(self) -> None:
        """When the events fill whole pages, one more request confirms the end."""
        events = [event_json(n) for n in range(1, 5)]
        with RecordingServer(PagingGateway(events)) as server:
            client = EventsClient(gateway_url=server.url, api_key="key")
            got = list(
                client.iter_events("sandbox-1", since=1_700_000_000_001, page_size=3)
            )
        assert [SandboxEvent.from_json(e) for e in events[1:]] == got
        expected = 2
        assert expected == len(server.requests)

    def test_type_filter_is_kept_on_every_page(self) -> None:
        """The type filter goes with every page request."""
        with RecordingServer(events_reply([])) as server:
            client = EventsClient(gateway_url=server.url, api_key="key")
            expected = []
            assert expected == list(client.iter_events("s", type="log.info"))
            expected = ["log.info"]
            assert expected == server.last.query["type"]
            assert [str(MAX_LIMIT)] == server.last.query["limit"]

    def test_checks_arguments_eagerly(self) -> None:
        """Bad arguments and a missing key raise when iter_events is called."""
        client = EventsClient(gateway_url="http://127.0.0.1:9")
        with pytest.raises(EventsAuthError):
            client.iter_events("s")
        client.set_api_key("key")
        with pytest.raises(ValueError, match="page_size"):
            client.iter_events("s", page_size=1001)
        with pytest.raises(TypeError):
            client.iter_events("s", page_size=True)
        with pytest.raises(ValueError, match="since"):
            client.iter_events("s", since=-3)

    def test_non_advancing_pages_raise(self) -> None:
        """A full page that does not move the cursor forward raises, not loops."""
        stuck = [event_json(0), event_json(0)]
        for e in stuck:
            e["timestamp"] = 5
        with RecordingServer(events_reply(stuck)) as server:
            client = EventsClient(gateway_url=server.url, api_key="key")
            with pytest.raises(EventsError, match="out of order"):
                list(client.iter_events("s", since=5, page_size=2))


class TestThreadSafetyOfCredentials:
    """Credentials are swapped atomically and read once per request."""

    def test_header_snapshot(self, store_server: RecordingServer) -> None:
        """Changing the token does not touch the shared session's headers."""
        with EventsClient(gateway_url=store_server.url, access_token="a") as client:
            before = dict(client._session.headers)
            client.set_access_token("b")
            client.store_event("custom")
            assert before == dict(client._session.headers)
        expected = "Bearer b"
        assert expected == store_server.last.headers["Authorization"]

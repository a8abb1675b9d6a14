"""EventsClient end to end on the local gateway (docs/protocol.md#protocol-http)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cse_bridge import (
    EventsAuthError,
    EventsClient,
    EventsError,
    EventType,
    SandboxEvent,
    create_events_client,
)
from cse_bridge import config as cfg
from cse_bridge.gateway import GatewayThread, issue_token

from ..helpers import API_KEY, OTHER_API_KEY, WORKSPACE

pytestmark = pytest.mark.usefixtures("clean_config_env")


@pytest.fixture
def client(gateway: GatewayThread) -> Iterator[EventsClient]:
    """A client of the gateway that may store for sandbox-1 and read workspace 1."""
    token = gateway.issue_token("sandbox-1", WORKSPACE)
    with EventsClient(
        gateway_url=gateway.http_url, access_token=token, api_key=API_KEY
    ) as c:
        yield c


class TestRoundTrip:
    """What store_event stores, get_events returns unchanged."""

    def test_store_then_get(self, client: EventsClient) -> None:
        """The stored event comes back with the same id, type, data and timestamp."""
        data = {"exitCode": 0, "output": "héllo ✓", "nested": {"a": [1, 2.5, None]}}
        result = client.store_event(EventType.EXECUTION_COMPLETED, data)
        expected = [
            SandboxEvent(
                id=result.event_id,
                sandbox_id="sandbox-1",
                workspace_id=WORKSPACE,
                type=EventType.EXECUTION_COMPLETED,
                data=data,
                timestamp=result.timestamp,
            )
        ]
        assert expected == client.get_events("sandbox-1")

    def test_result_names_the_token_sandbox(self, client: EventsClient) -> None:
        """The sandbox id comes from the token."""
        result = client.store_event("custom")
        expected = ("sandbox-1", "custom")
        assert expected == (result.sandbox_id, result.type)

    def test_default_data_is_empty_object(self, client: EventsClient) -> None:
        """An event stored without data reads back with data {}."""
        client.store_event("custom")
        expected: dict[str, object] = {}
        assert expected == client.get_events("sandbox-1")[0].data

    def test_sqlite_store(self, sqlite_gateway: GatewayThread) -> None:
        """The round trip works the same on the sqlite store."""
        token = sqlite_gateway.issue_token("sandbox-1")
        with EventsClient(
            gateway_url=sqlite_gateway.http_url, access_token=token, api_key=API_KEY
        ) as c:
            result = c.store_event("custom", {"k": "v"})
            events = c.get_events("sandbox-1")
        expected = [(result.event_id, {"k": "v"}, result.timestamp)]
        assert expected == [(e.id, e.data, e.timestamp) for e in events]

    @pytest.mark.parametrize(
        "sandbox_id", ["with space", "slash/inside", "percent%41", "ünï-çødé", "?#&="]
    )
    def test_unusual_sandbox_ids(self, gateway: GatewayThread, sandbox_id: str) -> None:
        """Sandbox ids that need URL quoting are read back correctly."""
        token = gateway.issue_token(sandbox_id)
        with EventsClient(
            gateway_url=gateway.http_url, access_token=token, api_key=API_KEY
        ) as c:
            result = c.store_event("custom")
            events = c.get_events(sandbox_id)
        expected = [(result.event_id, sandbox_id)]
        assert expected == [(e.id, e.sandbox_id) for e in events]


class TestFilters:
    """type, since and limit select what the API promises."""

    @pytest.fixture
    def stored(self, client: EventsClient) -> list[SandboxEvent]:
        """Six events of alternating types, read back."""
        for n in range(6):
            client.store_event("log.info" if n % 2 else "log.error", {"n": n})
        return client.get_events("sandbox-1")

    def test_type(self, client: EventsClient, stored: list[SandboxEvent]) -> None:
        """type selects events of exactly that type."""
        expected = [1, 3, 5]
        assert expected == [
            e.data["n"] for e in client.get_events("sandbox-1", type="log.info")
        ]

    def test_since_is_strictly_after(
        self, client: EventsClient, stored: list[SandboxEvent]
    ) -> None:
        """since returns the events strictly after that timestamp."""
        events = client.get_events("sandbox-1", since=stored[2].timestamp)
        expected = stored[3:]
        assert expected == events

    def test_limit_without_since_is_newest(
        self, client: EventsClient, stored: list[SandboxEvent]
    ) -> None:
        """Without since, limit keeps the newest events, oldest first."""
        expected = stored[-2:]
        assert expected == client.get_events("sandbox-1", limit=2)

    def test_limit_with_since_is_oldest_after(
        self, client: EventsClient, stored: list[SandboxEvent]
    ) -> None:
        """With since, limit keeps the first events after it."""
        expected = stored[1:3]
        assert expected == client.get_events(
            "sandbox-1", since=stored[0].timestamp, limit=2
        )

    def test_clamped_limit_is_accepted(
        self, client: EventsClient, stored: list[SandboxEvent]
    ) -> None:
        """Out-of-range limits are clamped, so the gateway never refuses them."""
        expected = (stored[-1:], stored)
        assert expected == (
            client.get_events("sandbox-1", limit=0),
            client.get_events("sandbox-1", limit=10**9),
        )

    def test_unknown_sandbox_is_empty(self, client: EventsClient) -> None:
        """A sandbox without events reads as an empty list."""
        expected: list[SandboxEvent] = []
        assert expected == client.get_events("no-such-sandbox")


class TestIterEvents:
    """iter_events pages past the 1000-event limit without loss or repetition."""

    def test_more_than_one_page(self, client: EventsClient) -> None:
        """2345 events come back complete and in order across three pages."""
        total = 2345
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda n: client.store_event("custom", {"n": n}), range(total))
            )
        events = list(client.iter_events("sandbox-1"))
        expected_ids = sorted(r.event_id for r in results)
        assert expected_ids == sorted(e.id for e in events)
        timestamps = [e.timestamp for e in events]
        assert sorted(set(timestamps)) == timestamps

    def test_since_and_type(self, client: EventsClient) -> None:
        """iter_events honours since and type across small pages."""
        results = [
            client.store_event("a" if n % 3 else "b", {"n": n}) for n in range(20)
        ]
        events = client.iter_events(
            "sandbox-1", type="a", since=results[4].timestamp, page_size=3
        )
        expected = [n for n in range(5, 20) if n % 3]
        assert expected == [e.data["n"] for e in events]


class TestAuthentication:
    """The gateway's 401s become EventsAuthError with its body as the message."""

    def test_forged_token(self, gateway: GatewayThread) -> None:
        """A token signed with another secret is refused with a 401."""
        forged = issue_token("x" * 40, "sandbox-1", WORKSPACE)
        with (
            EventsClient(gateway_url=gateway.http_url, access_token=forged) as c,
            pytest.raises(EventsAuthError) as info,
        ):
            c.store_event("custom")
        expected = 401
        assert expected == info.value.status_code
        assert "Invalid access token" in info.value.message

    def test_expired_token(self, gateway: GatewayThread) -> None:
        """An expired token is refused with a 401."""
        token = gateway.issue_token("sandbox-1", ttl=-60)
        with (
            EventsClient(gateway_url=gateway.http_url, access_token=token) as c,
            pytest.raises(EventsAuthError, match="expired"),
        ):
            c.store_event("custom")

    def test_unknown_api_key(self, gateway: GatewayThread) -> None:
        """An unknown API key is refused with a 401."""
        with (
            EventsClient(gateway_url=gateway.http_url, api_key="wrong") as c,
            pytest.raises(EventsAuthError) as info,
        ):
            c.get_events("sandbox-1")
        expected = 401
        assert expected == info.value.status_code

    def test_other_workspace_sees_nothing(
        self, gateway: GatewayThread, client: EventsClient
    ) -> None:
        """A key of another workspace does not see workspace 1's sandbox."""
        client.store_event("custom")
        client.set_api_key(OTHER_API_KEY)
        expected: list[SandboxEvent] = []
        assert expected == client.get_events("sandbox-1")


class TestGatewayErrors:
    """Other error answers become EventsError with the status code."""

    def test_body_too_large(self, client: EventsClient) -> None:
        """A body over the gateway's limit answers 413."""
        with pytest.raises(EventsError) as info:
            client.store_event("custom", {"blob": "x" * (2 * 1024 * 1024)})
        expected = 413
        assert expected == info.value.status_code

    def test_type_too_long(self, client: EventsClient) -> None:
        """A type over the gateway's limit answers 400."""
        with pytest.raises(EventsError) as info:
            client.store_event("t" * 1000)
        expected = (EventsError, 400)
        assert expected == (type(info.value), info.value.status_code)


class TestEnvironment:
    """A client built without arguments finds the gateway through COMPUTESDK_*."""

    def test_round_trip_from_env(
        self, gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """COMPUTESDK_GATEWAY_URL, _ACCESS_TOKEN and _API_KEY are enough."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, gateway.http_url + "/")
        monkeypatch.setenv(cfg.ENV_ACCESS_TOKEN, gateway.issue_token("env-sandbox"))
        monkeypatch.setenv(cfg.ENV_API_KEY, API_KEY)
        with create_events_client() as c:
            result = c.store_event("custom", {"from": "env"})
            expected = [result.event_id]
            assert expected == [e.id for e in c.get_events("env-sandbox")]


class TestConcurrency:
    """One client shared by many threads."""

    def test_threads_share_one_client(self, gateway: GatewayThread) -> None:
        """Eight threads storing through one client lose no event."""
        threads, per_thread = 8, 60
        token = gateway.issue_token("shared")
        barrier = threading.Barrier(threads)
        failures: list[BaseException] = []
        with EventsClient(
            gateway_url=gateway.http_url,
            access_token=token,
            api_key=API_KEY,
            pool_size=threads,
        ) as c:

            def send(worker: int) -> None:
                barrier.wait(10)
                try:
                    for n in range(per_thread):
                        c.store_event("custom", {"worker": worker, "n": n})
                except BaseException as exc:  # reported below
                    failures.append(exc)

            workers = [
                threading.Thread(target=send, args=(w,), name=f"test-sender-{w}")
                for w in range(threads)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(30)
            events = list(c.iter_events("shared"))
        assert failures == []
        expected = {(w, n) for w in range(threads) for n in range(per_thread)}
        assert expected == {(e.data["worker"], e.data["n"]) for e in events}
        assert len(expected) == len(events)

    def test_credentials_swap_while_sending(self, gateway: GatewayThread) -> None:
        """Swapping the token while threads send never mixes up a request."""
        tokens = [gateway.issue_token("swap-a"), gateway.issue_token("swap-b")]
        with EventsClient(
            gateway_url=gateway.http_url, access_token=tokens[0], api_key=API_KEY
        ) as c:
            stop = threading.Event()

            def swap() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    c.set_access_token(tokens[i % 2])

            swapper = threading.Thread(target=swap, name="test-swapper")
            swapper.start()
            try:
                results = [c.store_event("custom", {"n": n}) for n in range(100)]
            finally:
                stop.set()
                swapper.join(10)
            stored = c.get_events("swap-a", limit=1000) + c.get_events(
                "swap-b", limit=1000
            )
        expected = sorted(r.event_id for r in results)
        assert expected == sorted(e.id for e in stored)

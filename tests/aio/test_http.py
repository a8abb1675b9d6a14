"""AsyncEventsClient end to end on the local gateway, and its error boundary."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from cse_bridge import EventsAuthError, EventsError, EventsNetworkError, SandboxEvent
from cse_bridge import config as cfg
from cse_bridge.aio import AsyncEventsClient
from cse_bridge.aio._errors import request_data
from cse_bridge.gateway import GatewayThread, issue_token

from ..helpers import API_KEY, OTHER_API_KEY, WORKSPACE
from .conftest import connections_to, other_tasks, run

pytestmark = pytest.mark.usefixtures("clean_config_env")


def _client(gateway: GatewayThread, **options: object) -> AsyncEventsClient:
    """A client that may store for sandbox-1 and read workspace 1."""
    defaults: dict[str, object] = {
        "gateway_url": gateway.http_url,
        "access_token": gateway.issue_token("sandbox-1", WORKSPACE),
        "api_key": API_KEY,
        "timeout": 5.0,
    }
    return AsyncEventsClient(**{**defaults, **options})  # type: ignore[arg-type]


class TestAsyncRoundTrip:
    """store_event, get_events and iter_events against the real gateway."""

    def test_store_then_get(self, gateway: GatewayThread) -> None:
        """An event stored is read back with the same id, type, data and time."""

        async def main() -> tuple[object, list[SandboxEvent]]:
            async with _client(gateway) as client:
                result = await client.store_event("custom", {"n": 1, "s": "é"})
                return result, await client.get_events("sandbox-1")

        result, events = run(main())
        assert [(result.event_id, "custom", {"n": 1, "s": "é"}, result.timestamp)] == [
            (e.id, e.type, e.data, e.timestamp) for e in events
        ]

    def test_filters(self, gateway: GatewayThread) -> None:
        """type, since (strictly after) and limit filter like the threaded client."""

        async def main() -> tuple[list[str], list[str], list[str]]:
            async with _client(gateway) as client:
                ids = [
                    (await client.store_event(t, {"i": i})).event_id
                    for i, t in enumerate(["a", "b", "a", "b", "a"])
                ]
                first = (await client.get_events("sandbox-1"))[0]
                of_type = await client.get_events("sandbox-1", type="a")
                after = await client.get_events("sandbox-1", since=first.timestamp)
                newest = await client.get_events("sandbox-1", limit=2)
                assert ids[0] == first.id
                return (
                    [e.id for e in of_type],
                    [e.id for e in after],
                    [e.id for e in newest],
                )

        of_type, after, newest = run(main())
        assert (3, 4, 2) == (len(of_type), len(after), len(newest))

    def test_iter_events_pages(self, gateway: GatewayThread) -> None:
        """iter_events yields every event across several pages, oldest first."""

        async def main() -> tuple[list[str], list[str]]:
            async with _client(gateway) as client:
                stored = [
                    (await client.store_event("custom", {"i": i})).event_id
                    for i in range(7)
                ]
                got = [e.id async for e in client.iter_events("sandbox-1", page_size=3)]
                return stored, got

        stored, got = run(main())
        assert stored == got

    def test_concurrent_tasks_share_one_client(self, gateway: GatewayThread) -> None:
        """Many tasks storing at once through one client all get their own event."""

        async def main() -> tuple[set[str], set[str]]:
            async with _client(gateway, pool_size=4) as client:
                results = await asyncio.gather(
                    *(client.store_event("custom", {"i": i}) for i in range(60))
                )
                stored = {e.id async for e in client.iter_events("sandbox-1")}
                return {r.event_id for r in results}, stored

        sent, stored = run(main())
        assert (60, sent) == (len(sent), stored)


class TestAsyncAuthentication:
    """Auth errors: the same classes, codes and messages as EventsClient."""

    def test_forged_token(self, gateway: GatewayThread) -> None:
        """A token signed with another secret is refused with a 401."""
        forged = issue_token("x" * 40, "sandbox-1", WORKSPACE)

        async def main() -> None:
            async with _client(gateway, access_token=forged) as client:
                await client.store_event("custom")

        with pytest.raises(EventsAuthError) as info:
            run(main())
        assert (401, True) == (
            info.value.status_code,
            "Invalid access token" in info.value.message,
        )

    def test_unknown_api_key(self, gateway: GatewayThread) -> None:
        """An unknown API key is refused with a 401."""

        async def main() -> None:
            async with _client(gateway, api_key="wrong") as client:
                await client.get_events("sandbox-1")

        with pytest.raises(EventsAuthError) as info:
            run(main())
        assert 401 == info.value.status_code

    def test_other_workspace_sees_nothing(self, gateway: GatewayThread) -> None:
        """A key of another workspace does not see workspace 1's sandbox."""

        async def main() -> list[SandboxEvent]:
            async with _client(gateway) as client:
                await client.store_event("custom")
                client.set_api_key(OTHER_API_KEY)
                return await client.get_events("sandbox-1")

        assert [] == run(main())

    def test_missing_credentials_send_nothing(self) -> None:
        """Without a token or key the calls raise before any connection is made."""

        async def main() -> list[str]:
            client = AsyncEventsClient(gateway_url="http://127.0.0.1:9")
            errors = []
            for call in (
                lambda: client.store_event("custom"),
                lambda: client.get_events("sb"),
            ):
                with pytest.raises(EventsAuthError) as info:
                    await call()
                errors.append(info.value.message.split()[0])
            with pytest.raises(EventsAuthError):
                client.iter_events("sb")  # checked when called, not when iterated
            opened = client._session is not None
            await client.aclose()
            return [*errors, str(opened)]

        assert ["Access", "API", "False"] == run(main())

    def test_bad_arguments_raise_like_the_threaded_client(self) -> None:
        """The same TypeError/ValueError checks run before anything is sent."""
        client = AsyncEventsClient(gateway_url="http://127.0.0.1:9", api_key="k")
        with pytest.raises(ValueError, match="page_size"):
            client.iter_events("sb", page_size=0)
        with pytest.raises(TypeError):
            AsyncEventsClient(timeout="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="http"):
            AsyncEventsClient(gateway_url="ftp://x")


class TestAsyncGatewayErrors:
    """Other error answers become EventsError with the status code."""

    def test_body_too_large(self, gateway: GatewayThread) -> None:
        """A body over the gateway's limit answers 413."""

        async def main() -> None:
            async with _client(gateway) as client:
                await client.store_event("custom", {"blob": "x" * (2 * 1024 * 1024)})

        with pytest.raises(EventsError) as info:
            run(main())
        assert 413 == info.value.status_code

    def test_refused_is_a_network_error(self) -> None:
        """A closed port raises EventsNetworkError."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]

        async def main() -> None:
            async with AsyncEventsClient(
                gateway_url=f"http://127.0.0.1:{port}", api_key="k"
            ) as client:
                await client.get_events("sb")

        with pytest.raises(EventsNetworkError):
            run(main())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold(conn: socket.socket) -> None:
        # Never answers; closes its end once the client has closed its own.
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
        conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=hold, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    for conn in held:
        conn.close()
    thread.join(5)


class TestAsyncTimeoutsAndCancellation:
    """Slow servers: a bounded wait, and a cancelled call that leaves nothing."""

    def test_read_timeout(self, silent_server: int) -> None:
        """No answer within *timeout* raises EventsNetworkError."""

        async def main() -> None:
            async with AsyncEventsClient(
                gateway_url=f"http://127.0.0.1:{silent_server}",
                api_key="k",
                timeout=0.2,
            ) as client:
                await client.get_events("sb")

        with pytest.raises(EventsNetworkError, match="timeout"):
            run(main())

    def test_cancelled_request_leaves_no_socket(self, silent_server: int) -> None:
        """Cancelling a call in flight closes its connection; aclose leaves none."""

        async def main() -> tuple[int, int, set[object]]:
            client = AsyncEventsClient(
                gateway_url=f"http://127.0.0.1:{silent_server}", api_key="k"
            )
            call = asyncio.ensure_future(client.get_events("sb"))
            await asyncio.sleep(0.2)
            during = connections_to(silent_server)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await client.aclose()
            await asyncio.sleep(0)
            return during, connections_to(silent_server), other_tasks()

        assert (1, 0, set()) == run(main())

    def test_closed_client_refuses_calls(self, gateway: GatewayThread) -> None:
        """After aclose (idempotent) a call raises RuntimeError."""

        async def main() -> None:
            client = _client(gateway)
            await client.store_event("custom")
            await client.aclose()
            await client.aclose()
            await client.store_event("custom")

        with pytest.raises(RuntimeError, match="closed"):
            run(main())


class TestAsyncEnvironment:
    """Argument > COMPUTESDK_* > default, as everywhere."""

    def test_round_trip_from_env(
        self, gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """COMPUTESDK_GATEWAY_URL, _ACCESS_TOKEN and _API_KEY are enough."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, gateway.http_url + "/")
        monkeypatch.setenv(cfg.ENV_ACCESS_TOKEN, gateway.issue_token("env-sandbox"))
        monkeypatch.setenv(cfg.ENV_API_KEY, API_KEY)

        async def main() -> tuple[str, list[str]]:
            async with AsyncEventsClient() as client:
                result = await client.store_event("custom", {"from": "env"})
                events = await client.get_events("env-sandbox")
                return result.event_id, [e.id for e in events]

        stored, read = run(main())
        assert [stored] == read

    def test_argument_beats_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit gateway_url wins over COMPUTESDK_GATEWAY_URL."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, "http://env.invalid")
        client = AsyncEventsClient(gateway_url="http://arg.invalid/")
        assert ("http://arg.invalid", False) == (client.gateway_url, client.has_api_key)


def _aiohttp_error_classes() -> list[type[BaseException]]:
    """Every exception class aiohttp exports that its client can raise."""
    return [
        cls
        for _, cls in inspect.getmembers(aiohttp, inspect.isclass)
        if issubclass(cls, aiohttp.ClientError)
    ]


_URL = URL("http://127.0.0.1:9/events")
_REQUEST = aiohttp.RequestInfo(_URL, "GET", CIMultiDictProxy(CIMultiDict()), _URL)


def _connection_key() -> ConnectionKey:
    """
    A ConnectionKey built by field name.

    aiohttp releases add fields to it and changed its kind (an attrs class in 3.9, a
    named tuple later), so the fields are read from its constructor's signature.
    """
    fields = inspect.signature(ConnectionKey).parameters
    values = {"host": "127.0.0.1", "port": 9, "is_ssl": False, "ssl": True}
    return ConnectionKey(**{name: values.get(name) for name in fields})


_KEY = _connection_key()


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of *cls*, whatever its constructor wants."""
    if issubclass(cls, aiohttp.ClientResponseError):
        return cls(_REQUEST, (), status=400, message="bad")  # type: ignore[call-arg]
    if issubclass(cls, aiohttp.ClientConnectorCertificateError):
        return cls(_KEY, ValueError("bad certificate"))  # type: ignore[call-arg]
    if issubclass(cls, aiohttp.ClientConnectorError):
        return cls(_KEY, OSError(111, "refused"))  # type: ignore[call-arg]
    if issubclass(cls, aiohttp.ServerFingerprintMismatch):
        return cls(b"a", b"b", "h", 1)  # type: ignore[call-arg]
    # NonHttpUrlClientError is newer than the aiohttp floor (3.9).
    url_errors = tuple(
        getattr(aiohttp, name)
        for name in ("InvalidURL", "NonHttpUrlClientError")
        if hasattr(aiohttp, name)
    )
    if issubclass(cls, url_errors):
        return cls("gopher://x")  # type: ignore[call-arg]
    return cls("failed")  # type: ignore[call-arg]


class TestAsyncErrorBoundary:
    """aio/_errors.py: every aiohttp failure becomes an EventsError subclass."""

    @pytest.mark.parametrize("cls", _aiohttp_error_classes(), ids=lambda c: c.__name__)
    def test_every_aiohttp_error_is_translated(self, cls: type[BaseException]) -> None:
        """No aiohttp exception escapes; the original is chained as the cause."""
        exc = _instance(cls)

        async def send() -> tuple[int, bytes, str | None, str]:
            raise exc

        with pytest.raises(EventsError) as info:
            run(request_data(send))
        assert exc is info.value.__cause__

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (asyncio.TimeoutError(), EventsNetworkError),
            (TimeoutError(), EventsNetworkError),
            (ConnectionResetError("reset"), EventsNetworkError),
            (aiohttp.ServerDisconnectedError(), EventsNetworkError),
            (aiohttp.ClientPayloadError("cut"), EventsNetworkError),
            (aiohttp.InvalidURL("x"), EventsError),
        ],
    )
    def test_classes(self, exc: BaseException, expected: type[EventsError]) -> None:
        """Timeouts and broken connections are network errors; a bad URL is not."""

        async def send() -> tuple[int, bytes, str | None, str]:
            raise exc

        with pytest.raises(EventsError) as info:
            run(request_data(send))
        assert expected is type(info.value)

    def test_answers_are_read_like_the_threaded_client(self) -> None:
        """A 401, a 503 and a 2xx without an envelope read as in EventsClient."""

        def answer(status: int, body: bytes):
            async def send() -> tuple[int, bytes, str | None, str]:
                return status, body, None, "Reason"

            return send

        got = []
        for status, body in [(401, b"nope"), (503, b""), (200, b"[]")]:
            with pytest.raises(EventsError) as info:
                run(request_data(answer(status, body)))
            got.append((type(info.value), info.value.status_code, info.value.message))
        assert [
            (EventsAuthError, 401, "nope"),
            (EventsError, 503, "HTTP 503 Reason"),
            (EventsError, 200, "Invalid response from server"),
        ] == got

"""Every client of ours over real TLS: a gateway with a trustme CA's certificate."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from cse_bridge import config
from cse_bridge.aio import AsyncEventsClient, AsyncPubSubClient
from cse_bridge.client import EventsClient
from cse_bridge.engine import BatchEngine, EventItem, EventsSink
from cse_bridge.errors import EventsNetworkError, EventsPubSubError
from cse_bridge.forwarder import Forwarder, JsonlSink
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import PubSubClient

from .conftest import make_gateway_config
from .helpers import API_KEY, wait_until

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA's certificate, PEM, in a file (what users give our clients)."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tls_gateway(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayThread]:
    """A gateway serving HTTPS and TLS pub/sub with a certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = folder / "cert.pem", folder / "key.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    config_ = make_gateway_config(tls_cert=str(cert), tls_key=str(key))
    with GatewayThread(config_) as gw:
        yield gw


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CA variable and no pub/sub TLS variable from the shell."""
    for name in (*config.ENV_CA_FILES, config.ENV_PUBSUB_TLS, "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


CA_VARIABLES = pytest.mark.parametrize("variable", [None, *config.ENV_CA_FILES])
"""Each test runs with the CA given as an argument, then by each variable."""


def _ca(
    variable: str | None, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    """The CA argument to pass: *ca_file*, or None once the variable holds it."""
    if variable is None:
        return ca_file
    monkeypatch.setenv(variable, ca_file)
    return None


class TestGatewayTls:
    """The gateway speaks only TLS on both ports."""

    def test_urls_say_tls(self, tls_gateway: GatewayThread) -> None:
        """The announced HTTP URL is https."""
        assert tls_gateway.http_url.startswith("https://127.0.0.1:")

    def test_plain_pubsub_client_gets_nothing(self, tls_gateway: GatewayThread) -> None:
        """A plaintext SUBSCRIBE on the TLS port is never answered as RESP."""
        with socket.create_connection(
            (tls_gateway.pubsub_host, tls_gateway.pubsub_port), timeout=TIMEOUT
        ) as sock:
            sock.sendall(b"PING\r\n")
            assert not sock.recv(100).startswith(b"+PONG")

    def test_client_without_the_ca_is_refused(
        self, tls_gateway: GatewayThread, no_ca_env: pytest.MonkeyPatch
    ) -> None:
        """Without our CA the certificate does not verify: an error, no data sent."""
        with (
            EventsClient(
                gateway_url=tls_gateway.http_url,
                access_token=tls_gateway.issue_token("sb-tls"),
            ) as client,
            pytest.raises(EventsNetworkError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.store_event("custom")
        subscriber = PubSubClient(
            host=tls_gateway.pubsub_host,
            port=tls_gateway.pubsub_port,
            access_token=tls_gateway.issue_token("sb-tls"),
            tls=True,
        )
        with pytest.raises(EventsPubSubError, match="cannot verify the TLS"):
            subscriber.connect(timeout=TIMEOUT)


class TestClientsOverTls:
    """Each client stores, reads or follows events over TLS end to end."""

    @CA_VARIABLES
    def test_events_client(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        variable: str | None,
    ) -> None:
        """EventsClient stores and reads back over HTTPS."""
        sandbox = f"sb-client-{variable}"
        with EventsClient(
            gateway_url=tls_gateway.http_url,
            access_token=tls_gateway.issue_token(sandbox),
            api_key=API_KEY,
            ca_file=_ca(variable, ca_file, no_ca_env),
        ) as client:
            stored = client.store_event("custom", {"n": 1})
            events = client.get_events(sandbox)
        assert [stored.event_id] == [event.id for event in events]

    @CA_VARIABLES
    def test_async_events_client(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        variable: str | None,
    ) -> None:
        """AsyncEventsClient stores and reads back over HTTPS."""
        sandbox = f"sb-aio-{variable}"
        ca = _ca(variable, ca_file, no_ca_env)

        async def main() -> tuple[str, list[str]]:
            async with AsyncEventsClient(
                gateway_url=tls_gateway.http_url,
                access_token=tls_gateway.issue_token(sandbox),
                api_key=API_KEY,
                ca_file=ca,
            ) as client:
                stored = await client.store_event("custom", {"n": 1})
                events = await client.get_events(sandbox)
            return stored.event_id, [event.id for event in events]

        stored, read = asyncio.run(main())
        assert [stored] == read

    @CA_VARIABLES
    def test_engine(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        variable: str | None,
    ) -> None:
        """The engine delivers every record over HTTPS."""
        sandbox = f"sb-engine-{variable}"
        sink = EventsSink(
            tls_gateway.http_url,
            tls_gateway.issue_token(sandbox),
            ca_file=_ca(variable, ca_file, no_ca_env),
        )
        engine = BatchEngine(sink, schedule_delay=0.02)
        try:
            for index in range(20):
                engine.submit(EventItem("log.info", {"i": index}))
            assert engine.flush(TIMEOUT)
        finally:
            assert engine.shutdown(TIMEOUT)
        with EventsClient(
            gateway_url=tls_gateway.http_url, api_key=API_KEY, ca_file=ca_file
        ) as reader:
            events = reader.get_events(sandbox)
        assert list(range(20)) == sorted(event.data["i"] for event in events)
        assert {} == dict(engine.stats().dropped)

    @CA_VARIABLES
    def test_subscriber(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        variable: str | None,
    ) -> None:
        """PubSubClient backfills and follows live over TLS; PING crosses it too."""
        sandbox = f"sb-sub-{variable}"
        ca = _ca(variable, ca_file, no_ca_env)
        if variable is not None:
            no_ca_env.setenv(config.ENV_PUBSUB_TLS, "1")
        with EventsClient(
            gateway_url=tls_gateway.http_url,
            access_token=tls_gateway.issue_token(sandbox),
            ca_file=ca_file,
        ) as writer:
            before = writer.store_event("custom", {"n": 0}).event_id
            received: queue.SimpleQueue[SandboxEvent] = queue.SimpleQueue()
            client = PubSubClient(
                host=tls_gateway.pubsub_host,
                port=tls_gateway.pubsub_port,
                access_token=tls_gateway.issue_token(sandbox),
                api_key=API_KEY,
                gateway_url=tls_gateway.http_url,
                since=0,
                tls=True if variable is None else None,
                ca_file=ca,
            )
            client.on("event", received.put)
            client.connect(timeout=TIMEOUT)
            try:
                after = [
                    writer.store_event("custom", {"n": n}).event_id
                    for n in range(1, 30)
                ]
                assert client.ping(TIMEOUT) >= 0
                got = [received.get(timeout=TIMEOUT).id for _ in range(30)]
            finally:
                client.disconnect()
        assert [before, *after] == got

    @CA_VARIABLES
    def test_async_subscriber(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        variable: str | None,
    ) -> None:
        """AsyncPubSubClient follows live over TLS."""
        sandbox = f"sb-aio-sub-{variable}"
        ca = _ca(variable, ca_file, no_ca_env)

        async def main() -> tuple[list[str], list[str]]:
            async with (
                AsyncEventsClient(
                    gateway_url=tls_gateway.http_url,
                    access_token=tls_gateway.issue_token(sandbox),
                    ca_file=ca_file,
                ) as writer,
                AsyncPubSubClient(
                    host=tls_gateway.pubsub_host,
                    port=tls_gateway.pubsub_port,
                    access_token=tls_gateway.issue_token(sandbox),
                    tls=True,
                    ca_file=ca,
                ) as client,
            ):
                stream = client.stream()
                receiving = asyncio.ensure_future(_take(stream, 10))
                await asyncio.sleep(0.05)  # the stream's first iteration has begun
                stored = [
                    (await writer.store_event("custom", {"i": i})).event_id
                    for i in range(10)
                ]
                got = await asyncio.wait_for(receiving, TIMEOUT)
                await stream.aclose()
            return stored, [event.id for event in got]

        stored, got = asyncio.run(main())
        assert stored == got

    @CA_VARIABLES
    def test_forwarder(
        self,
        tls_gateway: GatewayThread,
        ca_file: str,
        no_ca_env: pytest.MonkeyPatch,
        tmp_path: Path,
        variable: str | None,
    ) -> None:
        """The forwarder replays history and follows live over TLS into a sink."""
        sandbox = f"sb-forward-{variable}"
        ca = _ca(variable, ca_file, no_ca_env)
        out = tmp_path / "events.jsonl"
        with EventsClient(
            gateway_url=tls_gateway.http_url,
            access_token=tls_gateway.issue_token(sandbox),
            ca_file=ca_file,
        ) as writer:
            first = writer.store_event("custom", {"n": 0}).event_id
            forwarder = Forwarder(
                [JsonlSink(out)],
                tokens={sandbox: tls_gateway.issue_token(sandbox)},
                api_key=API_KEY,
                gateway_url=tls_gateway.http_url,
                host=tls_gateway.pubsub_host,
                port=tls_gateway.pubsub_port,
                since=0,
                tls=True,
                ca_file=ca,
            ).start()
            try:
                second = writer.store_event("custom", {"n": 1}).event_id
                assert wait_until(lambda: len(_lines(out)) >= 2, "two lines of output")
            finally:
                forwarder.stop()
        assert [first, second] == [line["id"] for line in _lines(out)]


async def _take(stream: Any, count: int) -> list[Any]:
    out: list[Any] = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_server_context_is_tls12_or_newer(tls_gateway: GatewayThread) -> None:
    """The gateway refuses TLS 1.1 and older."""
    tls = tls_gateway.gateway.tls
    assert tls is not None
    assert ssl.TLSVersion.TLSv1_2 == tls.minimum_version

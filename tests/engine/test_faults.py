"""Gateway faults against real servers: what the engine does and what it says."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from cse_bridge.engine import BatchEngine, EventsSink
from cse_bridge.engine._transport import AsyncTransport
from cse_bridge.gateway import GatewayThread
from cse_bridge.integrations.logging import EventsHandler

from .conftest import EngineFactory, item, read_events
from .exits import run_program
from .servers import AnsweringServer, ForwardProxy, closed_port


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _ship(
    make_engine: EngineFactory, url: str, count: int, **sink_options: object
) -> BatchEngine:
    sink = EventsSink(url, "token", **sink_options)  # type: ignore[arg-type]
    engine = make_engine(sink)
    for index in range(count):
        engine.submit(item(index))
    return engine


class TestRetryAfter:
    """Retry-After is a floor under the backoff."""

    @pytest.mark.parametrize("value", ["0", "-5", "Thu, 01 Jan 1970 00:00:01 GMT"])
    def test_zero_negative_or_past_is_not_a_tight_loop(
        self, make_engine: EngineFactory, value: str
    ) -> None:
        """429 with Retry-After 0/negative/past: the normal backoff, a few tries/s."""
        with AnsweringServer(429, {"Retry-After": value}) as server:
            engine = _ship(make_engine, server.url, 1)
            assert not engine.flush(2.0)  # bounded: the gateway never accepts
            requests = server.requests
        assert 1 <= requests <= 20
        assert 1 == engine.stats().queue_depth + engine.stats().in_flight


class TestPermanentErrors:
    """A setup error is said at once, naming the fix; events stay; retries are slow."""

    @pytest.mark.parametrize(
        ("status", "body", "said"),
        [
            (404, b"not found", "/events answered 404: the URL is not an events"),
            (405, b"no", "/events answered 405: the URL is not an events"),
            (200, b"<html>login</html>", "answered 200 without an event id"),
        ],
    )
    def test_wrong_url_or_not_a_gateway(
        self,
        make_engine: EngineFactory,
        capsys: pytest.CaptureFixture[str],
        status: int,
        body: bytes,
        said: str,
    ) -> None:
        """404/405 or a 2xx without an event id: one line, kept, one round of tries."""
        with AnsweringServer(status, body=body) as server:
            engine = _ship(make_engine, server.url, 5)
            assert not engine.flush(1.0)
            requests = server.requests
        lines = [line for line in _lines(capsys) if said in line]
        assert 1 == len(lines)
        assert "check COMPUTESDK_GATEWAY_URL; retrying every 30 s" in lines[0]
        stats = engine.stats()
        assert ({}, 5) == (stats.dropped, stats.queue_depth + stats.in_flight)
        assert 1 <= requests <= 5  # the first round only, on parallel connections

    def test_refused_token_names_the_variable(
        self, make_engine: EngineFactory, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A 401 says which setting fixes it."""
        with AnsweringServer(401, body=b"bad token") as server:
            engine = _ship(make_engine, server.url, 3)
            assert not engine.flush(0.5)
        lines = _lines(capsys)
        assert any("set COMPUTESDK_ACCESS_TOKEN" in line for line in lines), lines


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[AnsweringServer]:
    """A TLS events 'gateway' whose certificate the test CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with AnsweringServer(tls=context) as server:
        yield server


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA bundle variable of the shell leaks into the test."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_ca_env")
class TestTls:
    """A real TLS server with a test CA."""

    def test_unverifiable_certificate_is_said_at_once(
        self,
        make_engine: EngineFactory,
        capsys: pytest.CaptureFixture[str],
        tls_server: AnsweringServer,
    ) -> None:
        """Without the CA: one line naming the variables; nothing posted; kept."""
        engine = _ship(make_engine, tls_server.url, 4)
        assert not engine.flush(1.0)
        lines = [line for line in _lines(capsys) if "cannot verify" in line]
        assert 1 == len(lines)
        assert f"TLS certificate of {tls_server.url}" in lines[0]
        assert "SSL_CERT_FILE, REQUESTS_CA_BUNDLE or ca_file=" in lines[0]
        assert (0, {}) == (tls_server.requests, engine.stats().dropped)

    @pytest.mark.parametrize("how", ["argument", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
    def test_the_ca_by_argument_or_variable(  # noqa: PLR0917 - fixtures
        self,
        make_engine: EngineFactory,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        ca: trustme.CA,
        tls_server: AnsweringServer,
        how: str,
    ) -> None:
        """ca_file=, SSL_CERT_FILE or REQUESTS_CA_BUNDLE: every event is delivered."""
        pem = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(pem))
        options: dict[str, object] = {}
        if how == "argument":
            options["ca_file"] = str(pem)
        else:
            monkeypatch.setenv(how, str(pem))
        engine = _ship(make_engine, tls_server.url, 20, **options)
        assert engine.flush(10)
        assert 20 == tls_server.requests


class TestProxy:
    """A proxy from the environment carries the events."""

    def test_http_proxy_forwards_every_event(
        self,
        make_engine: EngineFactory,
        monkeypatch: pytest.MonkeyPatch,
        gateway: GatewayThread,
    ) -> None:
        """HTTP_PROXY set, no NO_PROXY: all events go through the proxy and arrive."""
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        token = gateway.issue_token("sb-proxy")
        with ForwardProxy() as proxy:
            monkeypatch.setenv("http_proxy", proxy.url)
            sink = EventsSink(gateway.http_url, token)
            engine = make_engine(sink)
            for index in range(30):
                engine.submit(item(index))
            assert engine.flush(10)
            forwarded = proxy.requests
        monkeypatch.delenv("http_proxy")
        assert (30, 30) == (forwarded, len(read_events(gateway, "sb-proxy")))


class TestResolver:
    """The exit budget holds whatever DNS does."""

    def test_a_resolver_that_never_answers_cannot_stretch_the_exit(self) -> None:
        """getaddrinfo blocks 30 s: exit within the 1 s budget, all 50 reported."""
        # The child's resolver is made to hang (no real DNS server here can be made
        # to): asyncio calls socket.getaddrinfo on its executor, as with a real one.
        ended = run_program(
            "normal",
            50,
            "http://dns-never-answers.invalid",
            "token",
            prelude=(
                "import socket, time; "
                "socket.getaddrinfo = lambda *a, **k: time.sleep(30)"
            ),
            env={"SETTLE": "0.3"},  # the lookup is under way when the program ends
        )
        assert 0 == ended.status
        assert 50 == ended.reported, ended.stderr
        assert ended.seconds < 1.0 + 2.5


class TestHandlerOptions:
    """Handler options reach the sink, whichever engine the handler uses."""

    def test_own_engine_with_a_transport(self, gateway: GatewayThread) -> None:
        """EventsHandler(transport=t, own_engine=True) ships through t."""
        token = gateway.issue_token("sb-own")
        handler = EventsHandler(
            own_engine=True,
            transport=AsyncTransport(gateway.http_url, connections=2),
            gateway_url=gateway.http_url,
            access_token=token,
        )
        logger = logging.getLogger("test.own_engine")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            for index in range(10):
                logger.warning("record %d", index)
            assert handler.engine is not None
            assert handler.engine.flush(10)
        finally:
            logger.removeHandler(handler)
            handler.close()
        assert 10 == len(read_events(gateway, "sb-own"))


MEMORY_PROGRAM = """
import logging, os, sys
from cse_bridge.integrations.logging import EventsHandler

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

handler = EventsHandler(max_queue_bytes=int(sys.argv[1]), handle_sigterm=False)
root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(handler)
logging.info("warm up")
handler.engine.flush(0.2)
base = rss()
for i in range(2000):
    logging.info("big %d", i, extra={"blob": "x" * 100_000 + str(i)})
print(rss() - base, handler.engine.stats().queue_bytes)
os._exit(0)
"""


class TestMemoryBound:
    """max_queue_bytes bounds memory, whatever the records carry."""

    def test_large_extras_are_bounded_while_the_gateway_is_down(self) -> None:
        """2,000 records of 100 KB extras (200 MB): RSS grows ~1.5x the 16 MiB bound."""
        bound = 16 * 1024 * 1024
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_PROGRAM, str(bound)],
            env={
                **os.environ,
                "COMPUTESDK_GATEWAY_URL": f"http://127.0.0.1:{closed_port()}",
                "COMPUTESDK_ACCESS_TOKEN": "token",
                "CSE_BRIDGE_EXIT_TIMEOUT": "0.5",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        grown, queued = (int(n) for n in done.stdout.split())
        assert queued <= bound
        assert grown < 1.5 * bound + 16 * 1024 * 1024, done.stdout

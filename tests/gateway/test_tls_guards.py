"""The connection caps and deadlines over real TLS: handshakes count from accept."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
import trustme

from cse_bridge.gateway import GatewayLimits, GatewayThread, issue_token

from ..conftest import make_gateway_config
from ..helpers import SECRET, wait_until
from .limited import limited_gateway

SHORT = 0.3
"""The handshake deadline (idle timeout) of the deadline tests, in seconds."""
TIMEOUT = 10.0
PORTS = pytest.mark.parametrize("port", ["http", "pubsub"])

PortName = Literal["http", "pubsub"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def pem_files(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """The gateway's certificate chain and key, and the CA, as PEM files."""
    folder = tmp_path_factory.mktemp("tls-guards")
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert), str(key), str(ca_file)


def _gateway(pem_files: tuple[str, str, str], **limits: Any) -> GatewayThread:
    cert, key, _ = pem_files
    config = make_gateway_config(
        tls_cert=cert, tls_key=key, limits=GatewayLimits(**limits)
    )
    return GatewayThread(config)


def _port(gw: GatewayThread, port: PortName) -> int:
    return gw.gateway.http_port if port == "http" else gw.pubsub_port


def _open(
    sockets: list[socket.socket], gw: GatewayThread, port: PortName
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(gw, port)), timeout=TIMEOUT)
    sockets.append(sock)
    return sock


def _open_count(gw: GatewayThread, port: PortName) -> int:
    return gw.gateway.open_connections()[port]


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed; fails if it never closes."""
    received = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        if not data:
            return bytes(received)
        received += data


def _answers_over_tls(gw: GatewayThread, port: PortName, ca_file: str) -> bool:
    """True if a real TLS client of *port* gets its answer."""
    if port == "http":
        answer = requests.get(f"{gw.http_url}/healthz", verify=ca_file, timeout=TIMEOUT)
        return 200 == answer.status_code
    context = ssl.create_default_context(cafile=ca_file)
    with (
        socket.create_connection(("127.0.0.1", gw.pubsub_port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"PING\r\n")
        return b"+PONG\r\n" == sock.recv(100)


class TestTlsConnectionCap:
    """Sockets that never shake hands fill the cap; the next one is closed at once."""

    @PORTS
    def test_handshakes_count_and_the_next_socket_is_closed(
        self,
        port: PortName,
        pem_files: tuple[str, str, str],
        sockets: list[socket.socket],
    ) -> None:
        """Three silent sockets fill a cap of 3; the fourth is closed unanswered."""
        with _gateway(pem_files, max_connections=3, idle_timeout=TIMEOUT) as gw:
            held = [_open(sockets, gw, port) for _ in range(3)]
            assert wait_until(lambda: 3 == _open_count(gw, port), f"3 open ({port})")
            started = time.monotonic()
            refused = _open(sockets, gw, port)
            assert b"" == _closed_by_server(refused)
            assert time.monotonic() - started < TIMEOUT / 2
            assert 1 == gw.gateway.rejections.count("connection_cap", port)
            assert 3 == _open_count(gw, port)
            # A socket that leaves in its handshake gives its slot back, counted.
            held[0].close()
            assert wait_until(lambda: 2 == _open_count(gw, port), f"2 open ({port})")
            assert wait_until(
                lambda: 1 == gw.gateway.rejections.count("invalid", port),
                "the failed handshake counted",
            )
            assert _answers_over_tls(gw, port, pem_files[2])
            assert 1 == gw.gateway.rejections.count("connection_cap", port)


class TestTlsHandshakeDeadline:
    """A handshake that stalls is cut at the idle timeout and its slot released."""

    @PORTS
    def test_stalled_handshake_is_cut(
        self,
        port: PortName,
        pem_files: tuple[str, str, str],
        sockets: list[socket.socket],
    ) -> None:
        """A socket that never sends a ClientHello is closed after the deadline."""
        with _gateway(pem_files, max_connections=1, idle_timeout=SHORT) as gw:
            stalled = _open(sockets, gw, port)
            started = time.monotonic()
            assert wait_until(lambda: 1 == _open_count(gw, port), f"1 open ({port})")
            assert b"" == _closed_by_server(stalled)
            elapsed = time.monotonic() - started
            assert SHORT * 0.8 < elapsed < TIMEOUT / 2
            assert wait_until(lambda: 0 == _open_count(gw, port), f"0 open ({port})")
            assert 1 == gw.gateway.rejections.count("timeout", port)
            # The slot is free again: the cap of 1 admits a real client.
            assert _answers_over_tls(gw, port, pem_files[2])
            assert 0 == gw.gateway.rejections.count("connection_cap", port)


class TestTlsDescriptorExhaustion:
    """With TLS, few descriptors and a flood of silent sockets, HTTPS answers."""

    def test_https_answers_while_pubsub_is_flooded(
        self,
        tmp_path: Path,
        pem_files: tuple[str, str, str],
        sockets: list[socket.socket],
    ) -> None:
        """400 silent TLS pub/sub sockets against 256 descriptors: POST answers."""
        cert, key, ca_file = pem_files
        tls = (f"--tls-cert={cert}", f"--tls-key={key}")
        with limited_gateway(tmp_path, *tls) as address:
            assert address["http"].startswith("https://")
            host, _, port = address["pubsub"].rpartition(":")
            for _ in range(400):
                sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
                sockets.append(sock)
            started = time.monotonic()
            answer = requests.post(
                f"{address['http']}/events",
                json={"type": "custom"},
                headers={"Authorization": f"Bearer {issue_token(SECRET, 'sb-1', 1)}"},
                timeout=3,
                verify=ca_file,
            )
            assert 200 == answer.status_code
            assert time.monotonic() - started < 3
            # The ones over the cap (96 per port under 256 descriptors) are closed
            # before any handshake; the rest wait in theirs.
            closed: set[socket.socket] = set()

            def all_closed() -> bool:
                closed.update(sock for sock in sockets if _is_closed(sock))
                return 400 - 96 <= len(closed)

            assert wait_until(all_closed, "every socket over the cap closed")
            assert 400 - 96 == len(closed)


def _is_closed(sock: socket.socket) -> bool:
    """True once the server closed *sock* (EOF or reset); reads nothing."""
    sock.setblocking(False)
    try:
        return b"" == sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(TIMEOUT)

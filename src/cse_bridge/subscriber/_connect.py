"""
Opening a pub/sub connection: the settings, ``SUBSCRIBE`` and its answer, the backoff.

Used by ``PubSubClient.connect`` (on the caller's thread) and by the session's socket
thread when it reconnects; nothing here keeps state between calls.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Final, TypeAlias

from .._tls import client_tls_context
from ..errors import EventsPubSubError
from ._resp import INCOMPLETE, ErrorReply, FrameReader
from ._rules import subscribe_answer, subscribe_command
from ._tls_socket import TlsSocket

__all__ = ["Connection", "Handshake", "Settings", "backoff_delay", "handshake"]

Connection: TypeAlias = socket.socket | TlsSocket
"""A subscribed connection's socket: plain TCP, or TLS."""

_READ_SIZE: Final = 65536


@dataclass(frozen=True, slots=True)
class Settings:
    """A client's resolved connection settings (seconds for every duration)."""

    host: str
    port: int
    sandbox_id: str
    token: str
    connect_timeout: float
    auto_reconnect: bool
    reconnect_delay: float
    max_reconnect_delay: float
    keepalive_interval: float
    keepalive_timeout: float
    max_rejections: int
    max_buffer_bytes: int
    tls: bool = False
    """Speak TLS to the server (a gateway run with ``--tls-cert``)."""
    ca_file: str | None = None
    """The CA bundle that verifies the server, or None for the system's."""


@dataclass(slots=True)
class Handshake:
    """An open, subscribed connection; its reader may hold input after ``+OK``."""

    sock: Connection
    reader: FrameReader


def handshake(settings: Settings, timeout: float) -> Handshake | ErrorReply:
    """
    Connect, send ``SUBSCRIBE``, and wait for the answer; blocks up to *timeout* s.

    Returns:
        The subscribed connection, or the server's ``-ERR`` answer.

    Raises:
        EventsPubSubError: Refused, timed out, closed early, or not RESP.
    """
    deadline = time.monotonic() + timeout
    where = f"{settings.host}:{settings.port}"
    try:
        raw = socket.create_connection((settings.host, settings.port), timeout)
    except TimeoutError:
        raise EventsPubSubError(f"pub/sub connect to {where} timed out") from None
    except OSError as exc:
        raise EventsPubSubError(f"pub/sub connect to {where} failed: {exc}") from None
    sock: Connection = raw
    if settings.tls:
        sock = _start_tls(raw, settings, deadline, where)
    try:
        return _subscribe(sock, settings, deadline, where)
    except TimeoutError:
        sock.close()
        raise EventsPubSubError(f"pub/sub subscribe to {where} timed out") from None
    except OSError as exc:
        sock.close()
        raise EventsPubSubError(
            f"pub/sub connection to {where} failed: {exc}"
        ) from None
    except BaseException:
        sock.close()
        raise


def _start_tls(
    raw: socket.socket, settings: Settings, deadline: float, where: str
) -> TlsSocket:
    try:
        context = client_tls_context(settings.ca_file)
        return TlsSocket(
            raw, context, settings.host, max(0.001, deadline - time.monotonic())
        )
    except TimeoutError:
        raw.close()
        raise EventsPubSubError(
            f"pub/sub TLS handshake with {where} timed out"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise EventsPubSubError(
            f"cannot verify the TLS certificate of pub/sub {where} "
            f"({exc.verify_message}); give the CA that signed it with ca_file=, "
            "SSL_CERT_FILE or REQUESTS_CA_BUNDLE"
        ) from None
    except (OSError, ValueError) as exc:
        raw.close()
        raise EventsPubSubError(
            f"pub/sub TLS with {where} failed ({exc}); is it a TLS port?"
        ) from None
    except BaseException:
        raw.close()
        raise


def _subscribe(
    sock: Connection, settings: Settings, deadline: float, where: str
) -> Handshake | ErrorReply:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = FrameReader(settings.max_buffer_bytes)
    sock.sendall(subscribe_command(settings.sandbox_id, settings.token))
    # Only the answer is parsed here: whatever follows it in the same read (pushes,
    # or garbage) is the session's to handle, after connect() has returned.
    first = reader.next_frame()
    while first is INCOMPLETE:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        data = sock.recv(_READ_SIZE)
        if not data:
            raise EventsPubSubError(f"pub/sub server {where} closed the connection")
        reader.feed(data)
        first = reader.next_frame()
    refused = subscribe_answer(first, where)
    if refused is not None:
        sock.close()
        return refused
    return Handshake(sock, reader)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before reconnect *attempt* (0-based): ``min(cap, base·2ⁿ)·U(¾, 1)``."""
    return float(min(cap, base * 2 ** min(attempt, 32)) * random.uniform(0.75, 1.0))  # noqa: S311

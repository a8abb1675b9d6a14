"""
Tiny in-test servers for the client's unit tests.

They stand in for a gateway only where ours can't: to see exactly what went over the
wire, and to answer with malformed bodies that our gateway never produces.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.body)


@dataclass
class Reply:
    """What the server answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def envelope(cls, data: Any, status: int = 200) -> Reply:
        """A ``{"success": true, "data": ...}`` JSON answer."""
        return cls.json({"success": True, "data": data}, status)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Reply:
        """Any JSON answer."""
        return cls(
            status, json.dumps(obj).encode(), {"Content-Type": "application/json"}
        )


Responder = Callable[[Recorded], Reply]


class RecordingServer:
    """
    An HTTP server on 127.0.0.1:0 that records requests and answers via *respond*.

    ``url`` is its base URL; ``requests`` lists what it received, in order.
    """

    def __init__(self, respond: Responder | Reply | None = None) -> None:
        if respond is None:
            respond = Reply.envelope({})
        self.respond: Responder = (
            respond if callable(respond) else (lambda _req, r=respond: r)
        )
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    dict(self.headers.items()),
                    body,
                )
                with server._lock:
                    server.requests.append(recorded)
                reply = server.respond(recorded)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one interval
            name="test-recording-server",
            daemon=True,
        )

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def last(self) -> Recorded:
        """The most recent request."""
        with self._lock:
            return self.requests[-1]


class SilentListener:
    """
    A listening socket that never accepts: it proves whether anything connected.

    The kernel completes a loopback TCP handshake into the backlog before
    ``connect()`` returns, so "nothing pending right after the call" means the call
    never connected.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def connection_attempted(self) -> bool:
        """True if a connection is waiting in the backlog."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@contextmanager
def silent_listener() -> Iterator[SilentListener]:
    """A ``SilentListener`` closed afterwards."""
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


@contextmanager
def raw_server(script: Callable[[socket.socket], None]) -> Iterator[str]:
    """
    Accept one connection and run *script* on it in a thread; yield the base URL.

    For byte-level misbehaviour: half answers, broken chunks, silence.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def run() -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            script(conn)

    thread = threading.Thread(target=run, name="test-raw-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        # shutdown() wakes a thread blocked in accept() (close() alone may not).
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)


def read_request_head(conn: socket.socket) -> bytes:
    """Read until the end of the request head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

"""Small real HTTP servers that misbehave on purpose, for the engine's fault tests."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

STORED = b'{"success":true,"data":{"eventId":"evt_test"}}'
"""What the gateway answers for a stored event (its event id is what counts)."""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that abort (an abandoned send, a process ending) are normal


class AnsweringServer:
    """
    A keep-alive HTTP/1.1 server on a free 127.0.0.1 port answering every POST alike.

    *status* and *headers* are the answer; ``hang=True`` reads each request and never
    answers (until the server stops). ``requests`` counts the POSTs it read.
    """

    def __init__(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        hang: bool = False,
        body: bytes = STORED,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.hang = hang
        self.body = body
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body go in two writes

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                with owner._lock:
                    owner.requests += 1
                if owner.hang:
                    owner._stop.wait(60)
                    self.close_connection = True
                    return
                self.send_response(owner.status)
                for name, value in owner.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.scheme = "https"
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cse-bridge-test-server",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> AnsweringServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ForwardProxy:
    """
    A plain HTTP forward proxy on a free 127.0.0.1 port: POSTs to absolute URLs.

    ``requests`` counts what it forwarded.
    """

    def __init__(self) -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.requests += 1
                names = ("Authorization", "Content-Type")
                upstream = urllib.request.Request(  # noqa: S310 - a test's own URL
                    self.path,
                    data=body,
                    headers={n: self.headers[n] for n in names if n in self.headers},
                    method="POST",
                )
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(upstream, timeout=10) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cse-bridge-test-proxy",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The proxy's URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class RawServer:
    """
    Answers every request on a free 127.0.0.1 port with the bytes *answer*, as is.

    Reads until the end of one request (head plus Content-Length body), writes
    *answer*, then closes the connection if *close*, else waits for the next.
    """

    def __init__(self, answer: bytes, *, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.arrivals: list[float] = []
        """When each request had been read whole (``time.monotonic()``)."""
        self.connections = 0
        """Connections accepted."""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name="cse-bridge-test-raw", daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def requests(self) -> int:
        """Requests read whole so far."""
        return len(self.arrivals)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        # The client may drop the connection mid-answer (a body over its cap).
        with contextlib.suppress(OSError):
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        with conn:
            while not self._stop.is_set():
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    continue
                head = buf[:end].decode("latin-1").lower()
                length = 0
                for line in head.split("\r\n"):
                    if line.startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                while len(buf) < end + 4 + length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[end + 4 + length :]
                self.arrivals.append(time.monotonic())
                conn.sendall(self.answer)
                if self.close:
                    return

"""Small real HTTP servers that misbehave on purpose, for the engine's fault tests."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


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
        body: bytes = b'{"ok":true}',
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cse-bridge-test-server",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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

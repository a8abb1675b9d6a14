"""
A TLS connection that the socket thread reads while other threads send.

OpenSSL forbids using one connection from two threads at once, and the threaded
client does exactly that: its socket thread waits in ``recv`` while ``ping()`` or
``disconnect()`` send from the caller's thread. So the TLS socket here never blocks:
every TLS call runs under one lock and returns at once, and the waiting happens
outside the lock, on the descriptor.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time

__all__ = ["TlsSocket"]


class TlsSocket:
    """
    The calls ``Session`` and ``handshake`` make on a socket, over TLS.

    Safe for one reading thread and any number of sending threads.

    Args:
        sock: A connected TCP socket; this object owns it from now on.
        context: Verifies the server (see ``client_tls_context``).
        server_hostname: The name the certificate must carry.
        timeout: Seconds the TLS handshake may take.

    Raises:
        TimeoutError: The handshake did not finish in time.
        ssl.SSLError: It failed (for instance, the certificate does not verify).
    """

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_hostname: str,
        timeout: float,
    ) -> None:
        sock.settimeout(timeout)
        self._tls = context.wrap_socket(sock, server_hostname=server_hostname)
        self._tls.setblocking(False)
        self._lock = threading.Lock()
        self._timeout: float | None = timeout

    def settimeout(self, timeout: float | None) -> None:
        """Seconds ``recv`` and ``sendall`` may wait; None: no limit."""
        self._timeout = timeout

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Set a socket option on the TCP socket."""
        self._tls.setsockopt(level, option, value)

    def recv_into(self, buffer: bytearray) -> int:
        """
        Read decrypted bytes into *buffer*; 0 once the server closed.

        Raises:
            TimeoutError: Nothing arrived within the timeout.
            OSError: The connection failed.
        """
        deadline = self._deadline()
        while True:
            with self._lock:
                try:
                    return self._tls.recv_into(buffer)
                except ssl.SSLWantReadError:
                    events = selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    events = selectors.EVENT_WRITE
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return 0
            self._wait(events, deadline)

    def recv(self, size: int) -> bytes:
        """Read up to *size* decrypted bytes; b"" once the server closed."""
        buffer = bytearray(size)
        return bytes(buffer[: self.recv_into(buffer)])

    def sendall(self, data: bytes) -> None:
        """
        Send all of *data*.

        Raises:
            TimeoutError: The server did not take it within the timeout.
            OSError: The connection failed.
        """
        deadline = self._deadline()
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    view = view[self._tls.send(view) :]
                    continue
                except ssl.SSLWantWriteError:
                    events = selectors.EVENT_WRITE
                except ssl.SSLWantReadError:
                    events = selectors.EVENT_READ
            self._wait(events, deadline)

    def shutdown(self, how: int) -> None:
        """Shut the TCP socket down: wakes a thread waiting in ``recv`` at once."""
        # The plain socket's shutdown, not SSLSocket's: that one drops the TLS state
        # under a reader that may be using it.
        socket.socket.shutdown(self._tls, how)

    def close(self) -> None:
        """Close the connection (without a TLS close_notify)."""
        with self._lock:
            self._tls.close()

    def _deadline(self) -> float | None:
        timeout = self._timeout
        return None if timeout is None else time.monotonic() + timeout

    def _wait(self, events: int, deadline: float | None) -> None:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError("timed out")
        with selectors.DefaultSelector() as selector:
            selector.register(self._tls.fileno(), events)
            if not selector.select(left) and deadline is not None:
                raise TimeoutError("timed out")

"""A tiny raw pub/sub server for the RESP edge cases the real gateway never produces."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[socket.socket, int], None]
"""Serves one accepted connection; the int counts connections from 0."""


def event_json(index: int, sandbox_id: str = "sb-raw", size: int = 0) -> bytes:
    """A SandboxEvent as the gateway pushes it, with an optional padding field."""
    return json.dumps(
        {
            "id": f"evt_{index}",
            "sandboxId": sandbox_id,
            "workspaceId": 1,
            "type": "custom",
            "data": {"i": index, "pad": "x" * size},
            "timestamp": 1_700_000_000_000 + index,
        }
    ).encode()


def message_frame(payload: bytes, channel: bytes = b"sb-raw") -> bytes:
    """The RESP ``message`` push of *payload*."""
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(payload),
        payload,
    )


def read_command(conn: socket.socket) -> bytes:
    """Read up to and including the first CRLF (the client's SUBSCRIBE)."""
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def raw_server(handler: Handler) -> Iterator[int]:
    """Serve *handler* on a free localhost port (yielded) until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closing = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        count = 0
        while not closing.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=_serve, args=(handler, conn, count), daemon=True
            ).start()
            count += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        closing.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        listener.close()
        for conn in conns:
            conn.close()
        thread.join(5)


def _serve(handler: Handler, conn: socket.socket, index: int) -> None:
    with contextlib.suppress(OSError):
        handler(conn, index)

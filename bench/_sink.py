"""
A fast local HTTP sink for the shipping benchmarks: answers every POST at once.

    python bench/_sink.py        # prints {"http": "http://127.0.0.1:PORT"}, runs until killed

One asyncio protocol, no framework, keep-alive, so that the server's cost stays small
next to the clients measured (it runs in its own process: its CPU is not theirs). The
answer depends on the path, so every contender of ``bench/emit.py`` and
``bench/otel.py`` reads success:

- ``/events``: 200 with the gateway's answer (``{"success":true,"data":{"eventId":..}}``);
- ``/loki/api/v1/push``: 204, as Loki answers a push;
- anything else (OTLP ``/v1/logs`` and ``/v1/traces``, logtail's ``/``): 200 with an
  empty body (an empty OTLP export response).
"""

from __future__ import annotations

import asyncio
import json

_EVENT = b'{"success":true,"data":{"eventId":"evt_0","type":"bench"}}'
ANSWERS = {
    b"/events": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_EVENT), _EVENT),
    b"/loki/api/v1/push": b"HTTP/1.1 204 No Content\r\n\r\n",
}
EMPTY = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


class SinkProtocol(asyncio.Protocol):
    """Reads each request (head, then Content-Length bytes), answers by path."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to answer on."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer."""
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            start = head.find(b"\r\ncontent-length:")
            length = 0
            if start >= 0:
                stop = head.find(b"\r\n", start + 2)
                raw = head[start + 17 : stop if stop >= 0 else None]
                length = int(raw.strip())
            if len(buf) < end + 4 + length:
                return
            path = head.split(b" ", 2)[1].split(b"?", 1)[0]
            del buf[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(ANSWERS.get(path.rstrip(b"/") or b"/", EMPTY))


async def serve() -> None:
    """Serve on a free port of 127.0.0.1 forever; print the address as JSON."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"http": f"http://127.0.0.1:{port}"}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())

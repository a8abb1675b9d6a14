"""
The HTTP/1.1 response reader of the engine's asyncio sender (``_transport``).

Parses just what the engine acts on: the status, a ``Content-Length`` or chunked body
(both held to ``MAX_BODY``), ``Retry-After`` and ``Connection: close``; interim 1xx
answers are skipped. Anything that is not HTTP raises ``ValueError``. Runs on the
worker thread for every answer, so the common case (a small 200 with a length) costs
one ``find`` and a few slices.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "ChunkedBody",
    "Response",
    "ResponseReader",
    "body_length",
    "dechunk",
    "parse_head",
]

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 8 * 1024 * 1024


class Response(NamedTuple):
    """The parts of an HTTP answer the engine acts on."""

    status: int
    retry_after: str | None
    body: bytes


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """
    Return the status and the lower-cased headers of a response head (no CRLFCRLF).

    Raises:
        ValueError: It is not an HTTP response.
    """
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():  # noqa: PLR2004
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def body_length(headers: dict[str, str], status: int) -> int | None:
    """
    Return the body length a head announces, or None (read until close).

    Raises:
        ValueError: A malformed ``Content-Length``.
    """
    if status in (204, 304):
        return 0
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"bad Content-Length: {raw!r}")
    return int(raw)


def dechunk(buf: bytearray) -> bytes | None:
    """
    Return the de-chunked body of a whole chunked *buf* once complete, else None.

    Raises:
        ValueError: A malformed chunk, or a body over ``MAX_BODY``.
    """
    body = ChunkedBody()
    return body.feed(bytearray(buf))


_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


class ChunkedBody:
    """
    An incremental ``Transfer-Encoding: chunked`` decoder, held to ``MAX_BODY``.

    ``feed`` consumes what it can from the buffer it is given, so each byte is
    parsed once however the answer is split across reads.
    """

    __slots__ = ("_body", "_need")

    def __init__(self) -> None:
        self._body = bytearray()
        self._need: int | None = None
        """Bytes of chunk data still due; None: a size line; -1: trailers."""

    def feed(self, buf: bytearray) -> bytes | None:
        """
        Consume from *buf*; return the body once the last chunk and trailers came.

        Raises:
            ValueError: A malformed chunk, or a body or line over the caps.
        """
        while True:
            need = self._need
            if need is None or need < 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ValueError("chunk size line or trailer too large")
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                if need is not None:  # a trailer; the empty line ends the body
                    if not line:
                        return bytes(self._body)
                    continue
                size_text = line.split(b";", 1)[0].strip()
                if not size_text or not _HEX.issuperset(size_text):
                    raise ValueError(f"bad chunk size: {line[:40]!r}")
                size = int(size_text, 16)
                if len(self._body) + size > MAX_BODY:
                    raise ValueError("response body too large")
                self._need = size if size else -1
                continue
            if len(buf) < need + 2:
                return None
            if buf[need : need + 2] != b"\r\n":
                raise ValueError("chunk data not followed by CRLF")
            self._body += buf[:need]
            del buf[: need + 2]
            self._need = None


_PLAIN_200: Final = b"HTTP/1.1 200 "
_LENGTH: Final = b"\r\ncontent-length:"
_SPECIAL: Final = (b"\r\ntransfer-encoding:", b"\r\nconnection:", b"\r\nretry-after:")


def _plain_200(data: bytes) -> Response | None:
    """
    The common answer, whole in one read: a 200 with exactly its Content-Length.

    Anything else (another status, a chunked or closing answer, a Retry-After, a
    partial or longer read, an odd header) returns None for the general parser, so
    this only saves the head's decode, split and dict on the hot path.
    """
    if not data.startswith(_PLAIN_200):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].lower()
    start = head.find(_LENGTH)
    if start < 0 or head.find(_LENGTH, start + 1) >= 0:
        return None
    for name in _SPECIAL:
        if name in head:
            return None
    start += len(_LENGTH)
    stop = head.find(b"\r\n", start)
    raw = head[start:] if stop < 0 else head[start:stop]
    raw = raw.strip()
    if not raw.isdigit() or int(raw) != len(data) - end - 4:
        return None
    return Response(200, None, data[end + 4 :])


class ResponseReader:
    """
    Assembles one response from the bytes of a connection, as they arrive.

    ``feed`` returns the ``Response`` once complete; ``close`` says whether the server
    asked to close the connection after it. ``reset`` before the next request.
    """

    __slots__ = ("_buf", "_chunked", "_head", "close")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._chunked: ChunkedBody | None = None
        self.close = False

    def reset(self) -> None:
        """Forget the previous response."""
        self._buf.clear()
        self._head = None
        self._chunked = None
        self.close = False

    def feed(self, data: bytes) -> Response | None:
        """
        Add *data*; return the response once it is complete, else None.

        Raises:
            ValueError: The bytes are not HTTP, or the head or body is too large.
        """
        if self._head is None and not self._buf:
            fast = _plain_200(data)
            if fast is not None:
                return fast
        buf = self._buf
        buf += data
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError("response head too large")
                return None
            if end > MAX_HEAD:
                raise ValueError("response head too large")
            status, headers = parse_head(bytes(buf[:end]))
            del buf[: end + 4]
            if 100 <= status < 200:  # noqa: PLR2004 - an interim answer, skip it
                continue
            self._head = (status, headers)
            if headers.get("transfer-encoding", "").lower().endswith("chunked"):
                self._chunked = ChunkedBody()
            else:
                length = body_length(headers, status)
                if length is not None and length > MAX_BODY:
                    raise ValueError("response body too large")
        status, headers = self._head
        if self._chunked is not None:
            body = self._chunked.feed(buf)
            if body is None:
                return None
        else:
            length = body_length(headers, status)
            if length is None or len(buf) < length:
                if len(buf) > MAX_BODY:
                    raise ValueError("response body too large")
                return None
            body = bytes(buf[:length])
        self.close = headers.get("connection", "").lower() == "close"
        return Response(status, headers.get("retry-after"), body)

    def at_eof(self) -> Response | None:
        """The connection closed: the response if its body runs until close."""
        head = self._head
        if (
            head is not None
            and self._chunked is None
            and body_length(head[1], head[0]) is None
        ):
            return Response(head[0], head[1].get("retry-after"), bytes(self._buf))
        return None

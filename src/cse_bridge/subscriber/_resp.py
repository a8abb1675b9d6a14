"""
The client side of RESP framing, on redis-py's parsers (SPEC §1 "Real-time pub/sub").

Nothing here splits lines by hand: with hiredis installed the bytes go to its
``Reader`` (what redis-py's ``_HiredisParser`` wraps); without it, to redis-py's own
pure-Python ``_RESP2Parser``, driven through an in-memory buffer that rewinds when a
frame is incomplete. Either way, frames split across reads, several frames in one read
and bulk strings of any size up to the cap are handled, and no more than
``max_buffer_bytes`` of input is ever held unparsed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

from ..errors import EventsPubSubError

__all__ = [
    "INCOMPLETE",
    "MAX_UNPARSED_BYTES",
    "ErrorReply",
    "Frame",
    "FrameReader",
    "hiredis_available",
]

MAX_UNPARSED_BYTES: Final = 1024 * 1024
"""The SPEC's cap on unparsed input held by a subscriber: 1 MiB."""

_REDIS_MISSING: Final = (
    "the pub/sub client needs redis-py (and, for speed, hiredis): "
    "pip install 'cse-bridge[redis]'"
)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply (``-ERR message``) as a value; ``message`` is the full text."""

    message: str


Frame: TypeAlias = "bytes | int | ErrorReply | list[Frame] | None"
"""One parsed RESP2 reply: simple and bulk strings are bytes, nil is None."""


# Private control flow, never seen outside this module (errors.py has the public ones).
class _NeedMore(Exception):
    """Raised inside the pure-Python parser when a frame is not complete yet."""


class _HiredisProtocolError(Exception):
    """hiredis raises this for malformed input; it becomes an ``EventsPubSubError``."""


class _ReplyError(Exception):
    """hiredis builds this for ``-`` replies; it is turned into an ``ErrorReply``."""


class _Backend(Protocol):
    def feed(self, data: bytes) -> None: ...
    def gets(self) -> Any: ...
    def buffered(self) -> int: ...


_NOT_ENOUGH: Final = object()


class _Incomplete:
    """The type of ``INCOMPLETE``."""


INCOMPLETE: Final = _Incomplete()
"""What ``FrameReader.next_frame`` returns until a whole frame has arrived."""


def hiredis_available() -> bool:
    """Return True when the hiredis C parser can be imported."""
    return importlib.util.find_spec("hiredis") is not None


class _HiredisBackend:
    def __init__(self) -> None:
        import hiredis

        self._reader = hiredis.Reader(
            protocolError=_HiredisProtocolError,
            replyError=_ReplyError,
            notEnoughData=_NOT_ENOUGH,
        )

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def gets(self) -> Any:
        try:
            return self._reader.gets()
        except _HiredisProtocolError as exc:
            text = str(exc)
            if not text.lower().startswith("protocol error"):
                text = f"Protocol error: {text}"
            raise EventsPubSubError(text) from None

    def buffered(self) -> int:
        # hiredis drops parsed input lazily (once 1 KiB of it is behind the cursor),
        # so this counts the unparsed input plus under 1 KiB already parsed.
        return int(self._reader.len()) if self._reader.has_data() else 0


class _FeedBuffer:
    """The ``SocketBuffer`` interface of redis-py's parser, over bytes fed to it."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._data += data

    def unread(self) -> int:
        return len(self._data) - self._pos

    def get_pos(self) -> int:
        return self._pos

    def rewind(self, pos: int) -> None:
        self._pos = pos

    def purge(self) -> None:
        # Drop parsed bytes once they dominate: amortised O(1) per byte.
        if self._pos > len(self._data) // 2:
            del self._data[: self._pos]
            self._pos = 0

    def readline(self, timeout: object = None) -> bytes:
        end = self._data.find(b"\r\n", self._pos)
        if end < 0:
            raise _NeedMore
        line = bytes(self._data[self._pos : end])
        self._pos = end + 2
        return line

    def read(self, length: int, timeout: object = None) -> bytes:
        if length < 0:
            raise EventsPubSubError(f"Protocol error: negative bulk length {length}")
        end = self._pos + length
        if end + 2 > len(self._data):
            raise _NeedMore
        if self._data[end : end + 2] != b"\r\n":
            raise EventsPubSubError("Protocol error: bulk string not followed by CRLF")
        chunk = bytes(self._data[self._pos : end])
        self._pos = end + 2
        return chunk


class _PythonBackend:
    def __init__(self) -> None:
        from redis._parsers import _RESP2Parser

        class _Parser(_RESP2Parser):
            @classmethod
            def parse_error(cls, response: str) -> Exception:
                # Keep the whole text ("ERR ..."), as hiredis does.
                return _ReplyError(response)

        self._buffer = _FeedBuffer()
        self._parser = _Parser(socket_read_size=65536)  # type: ignore[no-untyped-call]  # redis-py
        self._parser._buffer = self._buffer

    def feed(self, data: bytes) -> None:
        self._buffer.feed(data)

    def gets(self) -> Any:
        if not self._buffer.unread():
            return _NOT_ENOUGH
        try:
            return self._parser.read_response(disable_decoding=True)
        except _NeedMore:
            return _NOT_ENOUGH
        except EventsPubSubError:
            raise
        except Exception as exc:  # redis' InvalidResponse, int() of a bad length
            raise EventsPubSubError(f"Protocol error: {exc}") from exc

    def buffered(self) -> int:
        return self._buffer.unread()


def _convert(reply: Any) -> Frame:
    if isinstance(reply, list):
        return [_convert(item) for item in reply]
    if isinstance(reply, _ReplyError):
        return ErrorReply(str(reply))
    if reply is None or isinstance(reply, (bytes, int)):
        return reply
    raise EventsPubSubError(f"Protocol error: unexpected reply {type(reply).__name__}")


class FrameReader:
    """
    Turns the bytes read from a pub/sub connection into RESP frames.

    Not thread-safe: one reader per connection, used by the thread that reads the
    socket. The cap is checked after each read is parsed: the input held never
    exceeds it by more than one read, and a frame larger than the cap is refused
    unless its last read completes it (reads are 64 KiB at most). After it raised
    ``EventsPubSubError`` the stream is out of sync: close the connection and start
    a new reader.

    Args:
        max_buffer_bytes: The most input held unparsed (1 MiB by default, the SPEC's
            cap); a frame that needs more is refused.
        use_hiredis: None picks hiredis when it is installed; False forces redis-py's
            pure-Python parser; True requires hiredis.

    Raises:
        ImportError: redis-py (or, with ``use_hiredis=True``, hiredis) is missing.
    """

    def __init__(
        self,
        max_buffer_bytes: int = MAX_UNPARSED_BYTES,
        *,
        use_hiredis: bool | None = None,
    ) -> None:
        if max_buffer_bytes < 1:
            raise ValueError("max_buffer_bytes must be at least 1")
        self.max_buffer_bytes = max_buffer_bytes
        if use_hiredis is None:
            use_hiredis = hiredis_available()
        try:
            self._backend: _Backend = (
                _HiredisBackend() if use_hiredis else _PythonBackend()
            )
        except ImportError as exc:
            raise ImportError(_REDIS_MISSING) from exc
        self.uses_hiredis = use_hiredis
        """True when the hiredis C parser does the work."""

    def feed(self, data: bytes) -> None:
        """Append bytes read from the connection (parsed by ``frames``)."""
        self._backend.feed(data)

    def frames(self) -> list[Frame]:
        """
        Return every complete frame fed so far, oldest first (maybe none).

        Raises:
            EventsPubSubError: Malformed input, or an unfinished frame holding more than
                ``max_buffer_bytes`` unparsed.
        """
        out: list[Frame] = []
        append = out.append
        gets = self._backend.gets
        while True:
            reply = gets()
            if reply is _NOT_ENOUGH:
                break
            # The common frame, a push of three bulk strings, is already a Frame.
            if (
                type(reply) is list
                and len(reply) == 3  # noqa: PLR2004 - kind, channel, data
                and type(reply[0]) is bytes
                and type(reply[1]) is bytes
                and type(reply[2]) is bytes
            ):
                append(reply)
            else:
                append(_convert(reply))
        self._check_cap()
        return out

    def _check_cap(self) -> None:
        held = self._backend.buffered()
        if held > self.max_buffer_bytes:
            raise EventsPubSubError(
                f"Protocol error: more than {self.max_buffer_bytes} bytes of "
                f"unparsed input ({held}); refusing to buffer more"
            )

    def next_frame(self) -> Frame | _Incomplete:
        """
        Return the next complete frame, or ``INCOMPLETE``; later input stays unparsed.

        Raises:
            EventsPubSubError: As ``frames``.
        """
        reply = self._backend.gets()
        if reply is _NOT_ENOUGH:
            self._check_cap()
            return INCOMPLETE
        return _convert(reply)

    def buffered(self) -> int:
        """Bytes held that no complete frame has used yet (hiredis: +< 1 KiB)."""
        return self._backend.buffered()

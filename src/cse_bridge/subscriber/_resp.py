"""
The client side of RESP framing, on hiredis' public ``Reader``.

The pub/sub server answers in RESP2 (docs/protocol.md#protocol-pubsub-framing). Nothing
here splits lines by hand: the bytes go to hiredis' C parser, which handles frames
split across reads, several frames in one read and bulk strings of any size. This
module adds what hiredis leaves to its caller: the cap on the input one unfinished
frame may hold, replies as plain values, and errors as ``EventsPubSubError``.

Why not share the gateway's ``CommandReader``: that one reads *commands* (inline
lines and arrays of bulk strings), refuses an oversized bulk on its header, and
must answer hostile clients with a precise ``-ERR``; this one reads *replies* of
every RESP2 type from a server. hiredis can do neither of the gateway's jobs, and
a hand-written reply parser is what this module replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ..errors import EventsPubSubError

# Imported here, not on the first connect: without the extra, importing the
# subscriber fails at once, naming the extra (and, as ``name``, the module).
try:
    import hiredis
except ImportError as _exc:
    raise ModuleNotFoundError(
        "cse_bridge.subscriber parses RESP with hiredis: "
        "pip install 'cse-bridge[redis]'",
        name=_exc.name,
    ) from _exc

__all__ = [
    "INCOMPLETE",
    "MAX_UNPARSED_BYTES",
    "ErrorReply",
    "Frame",
    "FrameReader",
]

MAX_UNPARSED_BYTES: Final = 1024 * 1024
"""The protocol's cap (1 MiB) on the input of an unfinished frame a subscriber holds."""

_MAX_DEPTH: Final = 8
"""Deepest nesting of arrays accepted; pub/sub replies nest two deep at most."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply (``-ERR message``) as a value; ``message`` is the full text."""

    message: str


Frame: TypeAlias = "bytes | int | ErrorReply | list[Frame] | None"
"""One parsed RESP2 reply; simple and bulk strings are bytes, nil is None."""


# Private, never seen outside this module (errors.py has the public exceptions).
class _ProtocolError(Exception):
    """hiredis raises this for malformed input; it becomes an ``EventsPubSubError``."""


class _ReplyError(Exception):
    """hiredis builds this for ``-`` replies; it is turned into an ``ErrorReply``."""


_NOT_ENOUGH: Final = object()
"""What hiredis' ``gets`` returns until a whole reply has arrived."""


class _Incomplete:
    """The type of ``INCOMPLETE``."""


INCOMPLETE: Final = _Incomplete()
"""What ``FrameReader.next_frame`` returns until a whole frame has arrived."""


def _convert(reply: Any, depth: int = 0) -> Frame:
    # Exact types: hiredis also parses RESP3, whose booleans (an int subclass),
    # doubles and maps no RESP2 server sends.
    kind = type(reply)
    if kind is bytes or kind is int or reply is None:
        return reply  # type: ignore[no-any-return]  # checked just above
    if isinstance(reply, list):  # RESP3 pushes come as a list subclass
        if depth >= _MAX_DEPTH:
            raise EventsPubSubError(
                f"Protocol error: arrays nested deeper than {_MAX_DEPTH}"
            )
        return [_convert(item, depth + 1) for item in reply]
    if kind is _ReplyError:
        return ErrorReply(str(reply))
    raise EventsPubSubError(f"Protocol error: unexpected {kind.__name__} reply")


def _protocol_error(exc: Exception) -> EventsPubSubError:
    # hiredis says "Protocol error, got ..." or just "Bad bulk string length".
    detail = str(exc)
    if detail.lower().startswith("protocol error"):
        detail = detail[len("protocol error") :].lstrip(",: ")
    return EventsPubSubError(f"Protocol error: {detail}")


class FrameReader:
    """
    Turns the bytes read from a pub/sub connection into RESP frames.

    Not thread-safe: one reader per connection, used by the thread that reads the
    socket. Call ``feed`` with each read, then ``frames`` (or ``next_frame``).

    The cap counts all the input of the unfinished frame, including the parts
    hiredis has already parsed (an array's first elements), and is checked after
    each read is parsed: one frame never holds more than the cap plus one read, and
    a frame larger than the cap is refused unless its last read completes it
    (sockets are read 64 KiB at a time). hiredis drops parsed input in 1 KiB steps,
    so the count may include under 1 KiB of the frames before; frames the gateway
    pushes stay 4 KiB below the default cap. After ``EventsPubSubError`` the
    stream is out of sync: close the connection and start a new reader.

    Args:
        max_buffer_bytes: The most input one unfinished frame may hold (1 MiB by
            default, the protocol's cap); a frame that needs more is refused.

    Raises:
        ValueError: ``max_buffer_bytes`` is below 1.
    """

    def __init__(self, max_buffer_bytes: int = MAX_UNPARSED_BYTES) -> None:
        if max_buffer_bytes < 1:
            raise ValueError("max_buffer_bytes must be at least 1")
        self.max_buffer_bytes = max_buffer_bytes
        # hiredis' maxbuf only decides when an idle buffer is freed, so the cap is
        # kept here, by counting what is fed.
        self._reader: hiredis.Reader = hiredis.Reader(
            protocolError=_ProtocolError,
            replyError=_ReplyError,
            notEnoughData=_NOT_ENOUGH,
        )
        self._pending = 0
        """Input fed since the last returned frame ended (over by < 1 KiB at most)."""

    def feed(self, data: bytes) -> None:
        """Append bytes read from the connection (parsed by ``frames``)."""
        self._reader.feed(data)
        self._pending += len(data)

    def frames(self) -> list[Frame]:
        """
        Return every complete frame fed so far, oldest first (maybe none).

        Raises:
            EventsPubSubError: Malformed input, or an unfinished frame holding more than
                ``max_buffer_bytes`` of input.
        """
        out: list[Frame] = []
        append = out.append
        reader = self._reader
        gets, has_data, held = reader.gets, reader.has_data, reader.len
        pending = self._pending
        try:
            while (reply := gets()) is not _NOT_ENOUGH:
                # Measured now, before the next gets() parses (and drops) the start
                # of the next frame: what is left is that frame's, all of it.
                pending = held() if has_data() else 0
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
        except _ProtocolError as exc:
            raise _protocol_error(exc) from None
        except MemoryError:
            # hiredis allocates an array's list on its header: *4294967295 asks
            # for 32 GiB before a single element has arrived.
            raise EventsPubSubError("Protocol error: reply too large") from None
        self._pending = pending
        self._check_cap()
        return out

    def next_frame(self) -> Frame | _Incomplete:
        """
        Return the next complete frame, or ``INCOMPLETE``; later input stays unparsed.

        Raises:
            EventsPubSubError: As ``frames``.
        """
        reader = self._reader
        try:
            reply = reader.gets()
        except _ProtocolError as exc:
            raise _protocol_error(exc) from None
        except MemoryError:
            raise EventsPubSubError("Protocol error: reply too large") from None
        if reply is _NOT_ENOUGH:
            self._check_cap()
            return INCOMPLETE
        self._pending = reader.len() if reader.has_data() else 0
        return _convert(reply)

    def buffered(self) -> int:
        """
        Return the bytes fed that no returned frame has used yet.

        That is the unfinished frame's input, parsed parts included, plus any whole
        frames not yet taken; it may count under 1 KiB of frames already returned.
        """
        return self._pending

    def _check_cap(self) -> None:
        if self._pending > self.max_buffer_bytes:
            raise EventsPubSubError(
                f"Protocol error: more than {self.max_buffer_bytes} bytes of "
                f"unparsed input ({self._pending}) in one frame; refusing to "
                "buffer more"
            )

"""
The pub/sub server's side of RESP: an incremental command reader and reply encoders.

Clients send commands inline (``SUBSCRIBE sb token\\r\\n``, a bare ``\\n`` works too)
or as RESP multibulk arrays of bulk strings, the two forms Redis accepts. The reader
keeps its progress between reads, so a command split into 1-byte reads costs O(n) in
total, and it bounds how much one unfinished command may buffer.

Written by hand on purpose, not on hiredis like the subscriber's reader: hiredis parses
*replies*, not commands. It has no inline form, takes any reply type as an argument,
and holds a bulk string whole before its size could be checked, where this reader
refuses an oversized command on its header, before buffering the payload, and names
the fault in the ``-ERR`` a hostile client gets.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CommandReader",
    "encode_bulk",
    "encode_error",
    "encode_message",
]

_CRLF: Final = b"\r\n"
_MAX_HEADER_LINE: Final = 32
"""Longest ``*<count>`` or ``$<length>`` line; the digits of any sane size fit."""
_MIN_ARG_BYTES: Final = 6
"""The smallest multibulk argument on the wire: ``$0\\r\\n\\r\\n``."""
_ERROR_TEXT_LIMIT: Final = 512
"""Longest text of an ``-ERR`` reply; echoed client input is cut to fit."""


class CommandReader:
    """
    Splits a client's byte stream into commands (lists of byte-string arguments).

    Not thread-safe: one reader per connection, used on the connection's loop. Call
    ``feed`` with each read, then ``next_command`` until it returns None. After it
    raised ``ValueError`` the stream is out of sync and the connection must be closed.

    Args:
        max_command_bytes: The largest inline line or multibulk frame accepted.
    """

    def __init__(self, max_command_bytes: int) -> None:
        if max_command_bytes < 1:
            raise ValueError("max_command_bytes must be at least 1")
        self._max = max_command_bytes
        self._buf = bytearray()
        self._pos = 0
        """Start of the unparsed input; consumed bytes are dropped lazily."""
        self._scanned = 0
        """Inline mode: bytes after ``_pos`` already known to hold no newline."""
        self._args_left = 0
        """Multibulk arguments still to read; 0 between commands."""
        self._bulk_len = -1
        """Length of the bulk string whose ``$`` header was read; -1 when none."""
        self._args: list[bytes] = []
        self._frame_bytes = 0
        """Bytes the current multibulk frame has used so far, headers included."""

    def feed(self, data: bytes) -> None:
        """Append bytes read from the connection."""
        self._buf += data

    def next_command(self) -> list[bytes] | None:
        """
        Return the next complete command, or None until more input arrives.

        Empty inline lines and empty multibulk arrays are skipped, as Redis does.

        Raises:
            ValueError: Malformed input, or a command over the size limit; the message
                starts with ``Protocol error:``.
        """
        while True:
            if self._args_left:
                command = self._read_multibulk_args()
            elif self._pos >= len(self._buf):
                command = None
            elif self._buf[self._pos] == ord("*"):
                if not self._read_multibulk_header():
                    command = None
                else:
                    continue
            else:
                command = self._read_inline()
                if command == []:
                    continue
            if command is None:
                self._compact()
            return command

    def _compact(self) -> None:
        # Drop consumed input once per read, not once per command: several commands
        # in one read then cost one copy of what is left, not one each.
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _read_inline(self) -> list[bytes] | None:
        start = self._pos
        newline = self._buf.find(b"\n", start + self._scanned)
        if newline < 0:
            self._scanned = len(self._buf) - start
            if self._scanned > self._max:
                raise ValueError("Protocol error: too big inline request")
            return None
        if newline - start > self._max:
            raise ValueError("Protocol error: too big inline request")
        self._pos = newline + 1
        self._scanned = 0
        return bytes(self._buf[start:newline]).split()

    def _read_header_line(self) -> bytes | None:
        # Header lines are tiny, so rescanning one after each read costs nothing.
        start = self._pos
        end = self._buf.find(_CRLF, start, start + _MAX_HEADER_LINE + 2)
        if end < 0:
            if len(self._buf) - start > _MAX_HEADER_LINE:
                raise ValueError("Protocol error: header line too long")
            return None
        self._pos = end + 2
        return bytes(self._buf[start:end])

    def _read_multibulk_header(self) -> bool:
        line = self._read_header_line()
        if line is None:
            return False
        count = _parse_length(line[1:], "multibulk length")
        if count <= 0:  # *0 and *-1 are empty commands; Redis ignores them too
            return True
        self._frame_bytes = len(line) + 2
        if self._frame_bytes + count * _MIN_ARG_BYTES > self._max:
            raise ValueError("Protocol error: too big multibulk request")
        self._args_left = count
        self._args = []
        return True

    def _read_multibulk_args(self) -> list[bytes] | None:
        while self._args_left:
            if self._bulk_len < 0:
                if self._pos >= len(self._buf):
                    return None
                if self._buf[self._pos] != ord("$"):
                    got = chr(self._buf[self._pos])
                    raise ValueError(f"Protocol error: expected '$', got {got!r}")
                line = self._read_header_line()
                if line is None:
                    return None
                length = _parse_length(line[1:], "bulk length")
                self._frame_bytes += len(line) + 2
                if length < 0:
                    raise ValueError("Protocol error: invalid bulk length")
                # Refuse on the header: never buffer a payload that cannot fit.
                if self._frame_bytes + length + 2 > self._max:
                    raise ValueError("Protocol error: too big multibulk request")
                self._bulk_len = length
            end = self._pos + self._bulk_len
            if len(self._buf) < end + 2:
                return None
            if self._buf[end : end + 2] != _CRLF:
                raise ValueError("Protocol error: bulk string not terminated by CRLF")
            self._args.append(bytes(self._buf[self._pos : end]))
            self._frame_bytes += self._bulk_len + 2
            self._pos = end + 2
            self._bulk_len = -1
            self._args_left -= 1
        args, self._args = self._args, []
        return args


def _parse_length(digits: bytes, what: str) -> int:
    text = digits.decode("ascii", "replace")
    # int() alone would also take "+5", " 5" and "5_0".
    if not (text.isdigit() or (text.startswith("-") and text[1:].isdigit())):
        raise ValueError(f"Protocol error: invalid {what}")
    return int(text)


def encode_message(channel: str, payload: str) -> bytes:
    """
    Return the RESP ``message`` push: ``*3 message <channel> <payload>``.

    Lengths are UTF-8 byte counts. A lone surrogate (possible only inside a JSON
    string) is written as its ``\\udcxx`` escape, which keeps the output valid UTF-8
    and the JSON equal in meaning.
    """
    chan = channel.encode("utf-8", "backslashreplace")
    body = payload.encode("utf-8", "backslashreplace")
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        len(chan),
        chan,
        len(body),
        body,
    )


def encode_bulk(data: bytes) -> bytes:
    """Return *data* as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode_error(message: str) -> bytes:
    """
    Return ``-ERR <message>\\r\\n``.

    Line breaks become spaces and the text is cut to a bounded length, since the
    message may echo client input and an error reply is a single line.
    """
    text = " ".join(message.split())[:_ERROR_TEXT_LIMIT]
    return b"-ERR " + text.encode("utf-8", "backslashreplace") + _CRLF

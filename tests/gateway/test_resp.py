"""The pub/sub server's RESP command reader and reply encoders."""

from __future__ import annotations

import json

import hiredis
import pytest

from cse_bridge.gateway._resp import (
    CommandReader,
    encode_bulk,
    encode_error,
    encode_message,
)

MULTIBULK_SUBSCRIBE = b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nsb-1\r\n$5\r\ntoken\r\n"


def read_all(reader: CommandReader, data: bytes) -> list[list[bytes]]:
    """Feed *data* in one piece and return every complete command."""
    reader.feed(data)
    commands: list[list[bytes]] = []
    while (command := reader.next_command()) is not None:
        commands.append(command)
    return commands


def read_bytewise(reader: CommandReader, data: bytes) -> list[list[bytes]]:
    """Feed *data* one byte at a time and return every complete command."""
    commands: list[list[bytes]] = []
    for i in range(len(data)):
        commands.extend(read_all(reader, data[i : i + 1]))
    return commands


class TestCommandReaderInline:
    """Inline commands: whitespace-separated words ending in CRLF or LF."""

    def test_crlf_line(self) -> None:
        """A CRLF-terminated line splits into its words."""
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"]]
        assert expected == read_all(CommandReader(1024), b"SUBSCRIBE sb-1 token\r\n")

    def test_bare_newline(self) -> None:
        """A line ending in a bare LF is accepted too."""
        expected = [[b"PING"]]
        assert expected == read_all(CommandReader(1024), b"PING\n")

    def test_extra_whitespace(self) -> None:
        """Runs of spaces and tabs separate words like one space."""
        expected = [[b"PING", b"hello"]]
        assert expected == read_all(CommandReader(1024), b"  PING \t hello  \r\n")

    def test_empty_lines_are_skipped(self) -> None:
        """Blank lines between commands produce no command."""
        expected = [[b"PING"], [b"QUIT"]]
        assert expected == read_all(CommandReader(1024), b"\r\n\nPING\r\n \r\nQUIT\n")

    def test_incomplete_line_waits(self) -> None:
        """A line without its newline yields nothing until the newline arrives."""
        reader = CommandReader(1024)
        expected = []
        assert expected == read_all(reader, b"PIN")
        expected = [[b"PING"]]
        assert expected == read_all(reader, b"G\r\n")

    def test_split_into_single_bytes(self) -> None:
        """A command fed one byte at a time comes out whole, once."""
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"]]
        actual = read_bytewise(CommandReader(1024), b"SUBSCRIBE sb-1 token\r\n")
        assert expected == actual

    def test_line_at_the_limit(self) -> None:
        """A line exactly max_command_bytes long (before its newline) is accepted."""
        line = b"PING " + b"x" * 5
        expected = [[b"PING", b"xxxxx"]]
        assert expected == read_all(CommandReader(len(line)), line + b"\n")

    def test_oversize_line_with_newline(self) -> None:
        """A complete line over the limit is a protocol error."""
        reader = CommandReader(16)
        with pytest.raises(ValueError, match=r"^Protocol error: too big inline"):
            read_all(reader, b"PING " + b"x" * 20 + b"\r\n")

    def test_oversize_line_without_newline(self) -> None:
        """An unfinished line is refused as soon as it outgrows the limit."""
        reader = CommandReader(16)
        expected = []
        assert expected == read_all(reader, b"PING xxxxxxxxxxx")
        with pytest.raises(ValueError, match=r"^Protocol error: too big inline"):
            read_all(reader, b"xx")


class TestCommandReaderMultibulk:
    """RESP multibulk commands: arrays of length-prefixed bulk strings."""

    def test_subscribe(self) -> None:
        """A multibulk SUBSCRIBE yields its three arguments."""
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"]]
        assert expected == read_all(CommandReader(1024), MULTIBULK_SUBSCRIBE)

    def test_split_into_single_bytes(self) -> None:
        """A multibulk command fed one byte at a time comes out whole, once."""
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"]]
        assert expected == read_bytewise(CommandReader(1024), MULTIBULK_SUBSCRIBE)

    def test_binary_safe_arguments(self) -> None:
        """Bulk strings may hold spaces, CR, LF and non-ASCII bytes."""
        payload = "a b\r\nc ✓".encode()
        data = b"*2\r\n$4\r\nPING\r\n" + encode_bulk(payload)
        expected = [[b"PING", payload]]
        assert expected == read_all(CommandReader(1024), data)

    def test_empty_bulk_string(self) -> None:
        """A zero-length bulk string is an empty argument."""
        data = b"*2\r\n$4\r\nPING\r\n$0\r\n\r\n"
        expected = [[b"PING", b""]]
        assert expected == read_all(CommandReader(1024), data)

    def test_empty_arrays_are_skipped(self) -> None:
        """``*0`` and ``*-1`` are ignored, as Redis does."""
        data = b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"
        expected = [[b"PING"]]
        assert expected == read_all(CommandReader(1024), data)

    def test_several_commands_in_one_read(self) -> None:
        """Inline and multibulk commands packed into one read all come out in order."""
        data = b"PING\r\n" + MULTIBULK_SUBSCRIBE + b"*1\r\n$4\r\nQUIT\r\nPING a\n"
        expected = [
            [b"PING"],
            [b"SUBSCRIBE", b"sb-1", b"token"],
            [b"QUIT"],
            [b"PING", b"a"],
        ]
        assert expected == read_all(CommandReader(1024), data)

    def test_every_split_point(self) -> None:
        """Two commands split into two reads at any byte yield the same commands."""
        data = MULTIBULK_SUBSCRIBE + b"PING\r\n"
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"], [b"PING"]]
        for cut in range(len(data) + 1):
            reader = CommandReader(1024)
            actual = read_all(reader, data[:cut]) + read_all(reader, data[cut:])
            assert expected == actual, cut

    def test_bad_array_length(self) -> None:
        """A non-numeric array length is a protocol error."""
        with pytest.raises(ValueError, match=r"^Protocol error: invalid multibulk"):
            read_all(CommandReader(1024), b"*x\r\n")

    def test_missing_dollar(self) -> None:
        """An array element that is not a bulk string is a protocol error."""
        with pytest.raises(ValueError, match=r"^Protocol error: expected '\$'"):
            read_all(CommandReader(1024), b"*1\r\n+PING\r\n")

    def test_bad_bulk_length(self) -> None:
        """A non-numeric or negative bulk length is a protocol error."""
        for header in (b"$x\r\n", b"$+4\r\n", b"$-1\r\n"):
            with pytest.raises(ValueError, match=r"^Protocol error: invalid bulk"):
                read_all(CommandReader(1024), b"*1\r\n" + header)

    def test_bulk_without_crlf(self) -> None:
        """A bulk string not followed by CRLF is a protocol error."""
        with pytest.raises(ValueError, match=r"^Protocol error: bulk string not"):
            read_all(CommandReader(1024), b"*1\r\n$4\r\nPINGxx")

    def test_endless_header_line(self) -> None:
        """A length line that never ends is refused once it is longer than any size."""
        with pytest.raises(ValueError, match=r"^Protocol error: header line too long"):
            read_all(CommandReader(1 << 20), b"*" + b"1" * 40)

    def test_declared_bulk_over_limit(self) -> None:
        """A bulk string declared larger than the limit is refused before its data."""
        with pytest.raises(ValueError, match=r"^Protocol error: too big multibulk"):
            read_all(CommandReader(64), b"*1\r\n$100\r\n")

    def test_too_many_elements(self) -> None:
        """An array with more elements than the limit could hold is refused at once."""
        with pytest.raises(ValueError, match=r"^Protocol error: too big multibulk"):
            read_all(CommandReader(64), b"*1000\r\n")

    def test_frame_at_the_limit(self) -> None:
        """A frame exactly max_command_bytes long is accepted."""
        expected = [[b"SUBSCRIBE", b"sb-1", b"token"]]
        assert expected == read_all(
            CommandReader(len(MULTIBULK_SUBSCRIBE)), MULTIBULK_SUBSCRIBE
        )

    def test_frame_one_byte_over_the_limit(self) -> None:
        """A frame one byte longer than max_command_bytes is refused."""
        reader = CommandReader(len(MULTIBULK_SUBSCRIBE) - 1)
        with pytest.raises(ValueError, match=r"^Protocol error: too big multibulk"):
            read_all(reader, MULTIBULK_SUBSCRIBE)

    def test_invalid_limit(self) -> None:
        """A limit below one byte is refused when the reader is built."""
        with pytest.raises(ValueError, match="max_command_bytes"):
            CommandReader(0)


class TestEncoders:
    """The replies the server writes."""

    def test_message_framing(self) -> None:
        """A push is a three-element array: message, channel, payload."""
        expected = b"*3\r\n$7\r\nmessage\r\n$4\r\nsb-1\r\n$2\r\n{}\r\n"
        assert expected == encode_message("sb-1", "{}")

    def test_message_lengths_are_utf8_bytes(self) -> None:
        """Bulk lengths count UTF-8 bytes, not characters."""
        channel, payload = "sb-ü", json.dumps({"m": "日本 🎉"}, ensure_ascii=False)
        frame = encode_message(channel, payload)
        reader = hiredis.Reader()
        reader.feed(frame)
        expected = [b"message", channel.encode(), payload.encode()]
        assert expected == reader.gets()
        assert f"${len(payload.encode())}\r\n".encode() in frame

    def test_message_lone_surrogate(self) -> None:
        """A lone surrogate in the JSON becomes its escape, keeping valid UTF-8 JSON."""
        payload = '{"s":"\udc80"}'
        frame = encode_message("sb", payload)
        reader = hiredis.Reader()
        reader.feed(frame)
        message = reader.gets()
        expected = "\udc80"
        assert expected == json.loads(message[2].decode("utf-8"))["s"]

    def test_bulk(self) -> None:
        """A bulk string carries its byte length."""
        expected = b"$6\r\nh\xc3\xa9llo\r\n"
        assert expected == encode_bulk("héllo".encode())

    def test_error_is_one_line(self) -> None:
        """Line breaks in an error message cannot end the reply early."""
        expected = b"-ERR bad thing here\r\n"
        assert expected == encode_error("bad\r\nthing\nhere")

    def test_error_is_bounded(self) -> None:
        """A huge error message is cut to a bounded length."""
        assert len(encode_error("x" * 10_000)) < 600

"""RESP framing on redis-py's parsers: hiredis and the pure-Python fallback."""

from __future__ import annotations

import pytest

from cse_bridge.errors import EventsPubSubError
from cse_bridge.subscriber._resp import MAX_UNPARSED_BYTES, ErrorReply, FrameReader

from .servers import event_json, message_frame


@pytest.fixture(params=[True, False], ids=["hiredis", "python"])
def reader(request: pytest.FixtureRequest) -> FrameReader:
    """A reader on each parser backend."""
    return FrameReader(use_hiredis=request.param)


class TestFrameReader:
    """``FrameReader`` turns a byte stream into frames."""

    def test_frame_split_into_single_bytes(self, reader: FrameReader) -> None:
        """A push fed one byte at a time comes out whole, exactly once."""
        frame = message_frame(event_json(1))
        seen = []
        for byte in frame:
            reader.feed(bytes([byte]))
            seen.extend(reader.frames())
        assert [[b"message", b"sb-raw", event_json(1)]] == seen

    def test_many_frames_in_one_read(self, reader: FrameReader) -> None:
        """Several frames in one read all come out, in order."""
        reader.feed(
            b"+OK\r\n" + b"".join(message_frame(event_json(i)) for i in range(50))
        )
        frames = reader.frames()
        assert b"OK" == frames[0]
        assert [event_json(i) for i in range(50)] == [f[2] for f in frames[1:]]  # type: ignore[index]

    def test_payload_with_crlf_inside(self, reader: FrameReader) -> None:
        """A bulk string holding CRLF is read by its length, not split at the line."""
        payload = b'{"a":"x\r\ny"}'
        reader.feed(message_frame(payload))
        assert [[b"message", b"sb-raw", payload]] == reader.frames()

    def test_large_payload_under_the_cap(self, reader: FrameReader) -> None:
        """A push of almost 1 MiB, fed in 1000-byte reads, is accepted."""
        frame = message_frame(event_json(7, size=MAX_UNPARSED_BYTES - 4096))
        frames = []
        for start in range(0, len(frame), 1000):
            reader.feed(frame[start : start + 1000])
            frames.extend(reader.frames())
        assert 1 == len(frames)

    def test_over_the_cap_is_refused(self, reader: FrameReader) -> None:
        """More than 1 MiB of one unfinished frame raises instead of buffering on."""
        frame = message_frame(event_json(7, size=2 * MAX_UNPARSED_BYTES))

        def feed_all() -> None:
            for start in range(0, len(frame), 65536):
                reader.feed(frame[start : start + 65536])
                reader.frames()

        with pytest.raises(EventsPubSubError, match="unparsed input"):
            feed_all()

    def test_error_reply_keeps_its_text(self, reader: FrameReader) -> None:
        """``-ERR text`` becomes an ``ErrorReply`` with the whole text."""
        reader.feed(b"-ERR Invalid token\r\n")
        assert [ErrorReply("ERR Invalid token")] == reader.frames()

    @pytest.mark.parametrize("garbage", [b"hello\r\n", b"$x\r\n", b"*2\r\n?\r\n"])
    def test_garbage_raises(self, reader: FrameReader, garbage: bytes) -> None:
        """Bytes that are not RESP raise ``EventsPubSubError``."""
        reader.feed(garbage)
        with pytest.raises(EventsPubSubError, match=r"(?i)protocol error"):
            reader.frames()

    def test_nil_and_integer(self, reader: FrameReader) -> None:
        """Nil bulk strings and integers come out as None and int."""
        reader.feed(b"$-1\r\n:42\r\n")
        assert [None, 42] == reader.frames()

    def test_bad_cap_is_rejected(self) -> None:
        """A cap below one byte is a ValueError."""
        with pytest.raises(ValueError, match="max_buffer_bytes"):
            FrameReader(0)

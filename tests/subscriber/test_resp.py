"""RESP framing on hiredis' public ``Reader``: splits, caps, errors."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cse_bridge.errors import EventsPubSubError
from cse_bridge.subscriber._resp import (
    INCOMPLETE,
    MAX_UNPARSED_BYTES,
    ErrorReply,
    Frame,
    FrameReader,
)

from .servers import event_json, message_frame

# One of each reply the pub/sub server may send, with what it parses to.
MIXED_STREAM = [
    (b"+OK\r\n", b"OK"),
    (message_frame(event_json(1)), [b"message", b"sb-raw", event_json(1)]),
    (b"-ERR Invalid token\r\n", ErrorReply("ERR Invalid token")),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"$0\r\n\r\n", b""),
    (b"*0\r\n", []),
    (message_frame(b'{"a":"x\r\ny"}'), [b"message", b"sb-raw", b'{"a":"x\r\ny"}']),
    (b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", [b"pong", b""]),
    (b"*2\r\n*1\r\n:1\r\n-ERR x\r\n", [[1], ErrorReply("ERR x")]),
]
MIXED_BYTES = b"".join(wire for wire, _ in MIXED_STREAM)
MIXED_FRAMES = [frame for _, frame in MIXED_STREAM]


def feed_in_chunks(reader: FrameReader, data: bytes, size: int) -> list[Frame]:
    """Feed *data* in reads of *size* bytes, parsing after each, as a socket would."""
    frames: list[Frame] = []
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
        frames.extend(reader.frames())
    return frames


def bulk_frame_of_size(total: int) -> bytes:
    """A single bulk string whose frame is exactly *total* bytes on the wire."""
    for digits in range(1, 10):
        payload = total - len(b"$\r\n\r\n") - digits
        if len(str(payload)) == digits:
            return b"$%d\r\n%s\r\n" % (payload, b"x" * payload)
    raise AssertionError(total)


class TestFrameReaderFraming:
    """``FrameReader`` turns a byte stream into frames, however it is cut."""

    def test_split_at_every_offset(self) -> None:
        """A stream of every reply kind cut in two at any byte parses the same."""
        for cut in range(len(MIXED_BYTES) + 1):
            reader = FrameReader()
            reader.feed(MIXED_BYTES[:cut])
            frames = reader.frames()
            reader.feed(MIXED_BYTES[cut:])
            frames += reader.frames()
            assert MIXED_FRAMES == frames, cut

    def test_single_byte_reads(self) -> None:
        """The stream fed one byte at a time comes out whole, each frame once."""
        assert MIXED_FRAMES == feed_in_chunks(FrameReader(), MIXED_BYTES, 1)

    def test_many_frames_in_one_read(self) -> None:
        """Several frames in one read all come out, in order."""
        reader = FrameReader()
        reader.feed(
            b"+OK\r\n" + b"".join(message_frame(event_json(i)) for i in range(50))
        )
        frames = reader.frames()
        assert b"OK" == frames[0]
        assert [event_json(i) for i in range(50)] == [f[2] for f in frames[1:]]  # type: ignore[index]
        assert 0 == reader.buffered()

    def test_error_reply_does_not_break_the_stream(self) -> None:
        """An ``-ERR`` reply is a value; the frames after it still parse."""
        reader = FrameReader()
        reader.feed(b"-ERR Invalid token\r\n+OK\r\n")
        assert [ErrorReply("ERR Invalid token"), b"OK"] == reader.frames()

    def test_frames_over_the_cap_in_total_are_fine(self) -> None:
        """Whole frames adding up to more than the cap in one read are accepted."""
        reader = FrameReader(max_buffer_bytes=1000)
        reader.feed(b"".join(message_frame(b"x" * 500) for _ in range(10)))
        assert 10 == len(reader.frames())


class TestFrameReaderCap:
    """``max_buffer_bytes`` bounds the input one unfinished frame may hold."""

    def test_large_payload_under_the_cap(self) -> None:
        """A push of almost 1 MiB, fed in 1000-byte reads, is accepted."""
        frame = message_frame(event_json(7, size=MAX_UNPARSED_BYTES - 4096))
        frames = feed_in_chunks(FrameReader(), frame, 1000)
        assert [
            [b"message", b"sb-raw", event_json(7, size=MAX_UNPARSED_BYTES - 4096)]
        ] == frames

    def test_bulk_exactly_the_cap_is_accepted(self) -> None:
        """A frame of exactly ``max_buffer_bytes``, fed in pieces, is accepted."""
        frame = bulk_frame_of_size(4096)
        assert 4096 == len(frame)
        payload = frame[frame.index(b"\r\n") + 2 : -2]
        assert [payload] == feed_in_chunks(FrameReader(4096), frame, 100)

    def test_one_byte_over_the_cap_is_refused(self) -> None:
        """An unfinished frame holding one byte more than the cap is refused."""
        frame = bulk_frame_of_size(5000)
        with pytest.raises(EventsPubSubError, match=r"^Protocol error: .*unparsed"):
            feed_in_chunks(FrameReader(4096), frame, 4097)

    def test_huge_bulk_is_refused(self) -> None:
        """More than 1 MiB of one unfinished frame raises instead of buffering on."""
        frame = message_frame(event_json(7, size=2 * MAX_UNPARSED_BYTES))
        reader = FrameReader()
        with pytest.raises(EventsPubSubError, match="unparsed input"):
            feed_in_chunks(reader, frame, 65536)
        assert reader.buffered() <= MAX_UNPARSED_BYTES + 65536

    def test_cap_counts_array_elements_already_parsed(self) -> None:
        """Three 400 KiB elements are one 1.2 MiB frame, though each fits the cap."""
        part = b"$%d\r\n%s\r\n" % (400 * 1024, b"x" * 400 * 1024)
        with pytest.raises(EventsPubSubError, match="unparsed input"):
            feed_in_chunks(FrameReader(), b"*3\r\n" + part * 3, 65536)

    def test_cap_counts_a_frame_begun_after_others(self) -> None:
        """A frame that starts in the read that ends others is counted in full."""
        small = b"".join(message_frame(event_json(i)) for i in range(20))
        big = message_frame(b"x" * 2 * MAX_UNPARSED_BYTES)
        with pytest.raises(EventsPubSubError, match="unparsed input"):
            feed_in_chunks(FrameReader(), small + big, 65536)

    def test_endless_array_is_refused(self) -> None:
        """An array announcing a billion elements is cut off at the cap."""
        reader = FrameReader(max_buffer_bytes=10_000)
        reader.feed(b"*1000000000\r\n")
        assert [] == reader.frames()
        with pytest.raises(EventsPubSubError, match="unparsed input"):
            feed_in_chunks(reader, b":1\r\n" * 100_000, 400)

    def test_bad_cap_is_rejected(self) -> None:
        """A cap below one byte is a ValueError."""
        with pytest.raises(ValueError, match="max_buffer_bytes"):
            FrameReader(0)


class TestFrameReaderErrors:
    """Input that is not RESP2 raises ``EventsPubSubError("Protocol error: ...")``."""

    @pytest.mark.parametrize(
        "garbage",
        [
            b"hello\r\n",
            b"$x\r\n",
            b"*2\r\n?\r\n",
            b":abc\r\n",
            b"$-2\r\n",
            b"+O\rK\r\n",
            b"*4294967296\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"%1\r\n+a\r\n+b\r\n",
            b"*1\r\n" * 9 + b":1\r\n",
            b"*1\r\n" * 2000 + b":1\r\n",
        ],
        ids=[
            "not-resp",
            "bad-bulk-length",
            "bad-type-byte",
            "bad-integer",
            "negative-bulk",
            "cr-in-line",
            "array-too-long",
            "resp3-bool",
            "resp3-double",
            "resp3-map",
            "nested-9",
            "nested-2000",
        ],
    )
    def test_garbage_raises(self, garbage: bytes) -> None:
        """Bytes that are not RESP2 raise ``EventsPubSubError``, with the cause."""
        reader = FrameReader()
        reader.feed(garbage)
        with pytest.raises(EventsPubSubError, match=r"^Protocol error: \S"):
            reader.frames()

    def test_garbage_after_good_frames_raises(self) -> None:
        """A bad byte after good frames in the same read still raises."""
        reader = FrameReader()
        reader.feed(b"+OK\r\n:1\r\n!oops\r\n")
        with pytest.raises(EventsPubSubError, match=r"^Protocol error: got"):
            reader.frames()

    def test_next_frame_raises_too(self) -> None:
        """``next_frame`` turns malformed input into the same error."""
        reader = FrameReader()
        reader.feed(b"?\r\n")
        with pytest.raises(EventsPubSubError, match=r"^Protocol error: "):
            reader.next_frame()

    def test_unallocatable_array_is_a_protocol_error(self) -> None:
        """An array header too big to allocate is refused, not a MemoryError."""
        code = textwrap.dedent(
            """
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
            from cse_bridge.errors import EventsPubSubError
            from cse_bridge.subscriber._resp import FrameReader
            reader = FrameReader()
            reader.feed(b"*4294967295\\r\\n")
            try:
                reader.frames()
            except EventsPubSubError as exc:
                print(exc)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert "Protocol error: reply too large\n" == done.stdout


class TestFrameReaderNextFrame:
    """``next_frame`` takes one frame and leaves the rest for later."""

    def test_one_frame_at_a_time(self) -> None:
        """The handshake's answer comes out alone; the pushes after it stay."""
        reader = FrameReader()
        push = message_frame(event_json(1))
        reader.feed(b"+OK\r\n" + push[:10])
        assert b"OK" == reader.next_frame()
        assert INCOMPLETE is reader.next_frame()
        assert 10 <= reader.buffered() < 10 + 1024  # may count parsed input < 1 KiB
        reader.feed(push[10:])
        assert [[b"message", b"sb-raw", event_json(1)]] == reader.frames()

    def test_incomplete_over_the_cap_raises(self) -> None:
        """An unfinished answer larger than the cap is refused by ``next_frame``."""
        reader = FrameReader(max_buffer_bytes=100)
        reader.feed(b"$1000\r\n" + b"x" * 200)
        with pytest.raises(EventsPubSubError, match="unparsed input"):
            reader.next_frame()


class TestSubscriberImport:
    """Without hiredis the subscriber says how to get it, at import."""

    def test_missing_hiredis_names_the_extra(self) -> None:
        """Importing it raises a one-line ModuleNotFoundError naming the extra."""
        code = (
            "import sys\n"
            "sys.modules['hiredis'] = None\n"
            "try:\n"
            "    import cse_bridge.subscriber\n"
            "except ModuleNotFoundError as exc:\n"
            "    print(exc.name, exc, sep='|')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        expected = (
            "hiredis|cse_bridge.subscriber parses RESP with hiredis: "
            "pip install 'cse-bridge[redis]'\n"
        )
        assert expected == done.stdout


# Property tests: random RESP2 replies, cut at random places.

_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1)
_SCALARS = st.one_of(
    st.binary(max_size=300),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none(),
    _TEXT.map(lambda text: ErrorReply("ERR " + text)),
)
_FRAMES = _SCALARS
for _ in range(3):  # arrays of arrays, as deep as the reader allows and deeper
    _FRAMES = st.one_of(_SCALARS, st.lists(_FRAMES, max_size=4))


def encode(frame: Frame, *, simple: bool) -> bytes:
    """Return *frame* as RESP2; *simple* writes CR/LF-free bytes as ``+`` strings."""
    if frame is None:
        return b"$-1\r\n"
    if isinstance(frame, ErrorReply):
        return b"-%s\r\n" % frame.message.encode()
    if isinstance(frame, int):
        return b":%d\r\n" % frame
    if isinstance(frame, bytes):
        if simple and b"\r" not in frame and b"\n" not in frame:
            return b"+%s\r\n" % frame
        return b"$%d\r\n%s\r\n" % (len(frame), frame)
    return b"*%d\r\n" % len(frame) + b"".join(
        encode(item, simple=simple) for item in frame
    )


class TestFrameReaderProperties:
    """Whatever the replies and however the reads cut them, they parse back."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        frames=st.lists(_FRAMES, max_size=10),
        simple=st.booleans(),
        cuts=st.lists(st.integers(min_value=0), max_size=8),
    )
    def test_round_trip(
        self, frames: list[Frame], simple: bool, cuts: list[int]
    ) -> None:
        """Encoded replies, fed in arbitrary pieces, come back equal and in order."""
        wire = b"".join(encode(frame, simple=simple) for frame in frames)
        bounds = sorted({0, len(wire), *(cut % (len(wire) + 1) for cut in cuts)})
        reader = FrameReader()
        parsed: list[Frame] = []
        for start, end in itertools.pairwise(bounds):
            reader.feed(wire[start:end])
            parsed.extend(reader.frames())
        assert frames == parsed
        assert 0 == reader.buffered()

    @settings(max_examples=300, deadline=None, database=None)
    @given(data=st.binary(max_size=200), size=st.integers(min_value=1, max_value=50))
    def test_arbitrary_bytes_parse_or_raise_protocol_error(
        self, data: bytes, size: int
    ) -> None:
        """Any input gives frames or ``EventsPubSubError``, never another exception."""
        reader = FrameReader(max_buffer_bytes=100)
        errors = []
        try:
            feed_in_chunks(reader, data, size)
        except EventsPubSubError as exc:
            errors.append(str(exc))
        assert all(error.startswith("Protocol error: ") for error in errors)

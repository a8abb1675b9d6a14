"""Segment files byte by byte: frames, damage, progress, locks (real files)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import replace
from pathlib import Path

from cse_bridge.engine import EncodedEvent, SendResult, Spool, Spooler
from cse_bridge.engine._spool import Claim
from cse_bridge.engine._spool._format import encode_frame, encode_header, parse_header
from cse_bridge.engine._spool._reader import SegmentReader


def _segment(count: int) -> tuple[bytes, list[int]]:
    """A segment's bytes with *count* frames, and where each frame starts (and the
    end)."""
    data = encode_header({"sandbox": "sb"})
    starts = [len(data)]
    for index in range(count):
        data += encode_frame("log.info", b'{"i":%d}' % index, 1)
        starts.append(len(data))
    return data, starts


def _bodies(reader: SegmentReader) -> list[bytes]:
    found = []
    while (event := reader.next()) is not None:
        found.append(event[0].body)
    return found


class TestSegmentReader:
    """Intact frames come out in order; damage is skipped and counted once."""

    def test_round_trip(self) -> None:
        """What encode_frame wrote, the reader gives back: type, body, items."""
        data = encode_header({"sandbox": "sb"}) + encode_frame("log.batch", b"{}", 7)
        header = parse_header(data)
        assert header is not None
        event, end = SegmentReader(data, header[0]).next() or (None, 0)
        assert event is not None
        assert ("log.batch", b"{}", 7, len(data)) == (
            event.type,
            event.body,
            event.items,
            end,
        )

    def test_a_damaged_stretch_counts_once(self) -> None:
        """Three frames overwritten with junk containing a false sync: one count."""
        data, starts = _segment(10)
        junk = b"\xff\xfeSR" + b"\x00" * (starts[5] - starts[2] - 4)
        damaged = data[: starts[2]] + junk + data[starts[5] :]
        reader = SegmentReader(damaged, starts[0])
        bodies = _bodies(reader)
        assert [b'{"i":%d}' % i for i in (0, 1, 5, 6, 7, 8, 9)] == bodies
        assert 1 == reader.damaged

    def test_torn_tail(self) -> None:
        """A last frame cut short is one damaged stretch; the rest reads."""
        data, starts = _segment(3)
        reader = SegmentReader(data[: starts[3] - 2], starts[0])
        assert 2 == len(_bodies(reader))
        assert (1, True) == (reader.damaged, reader.at_end)

    def test_rewind_does_not_count_again(self) -> None:
        """Reading a damaged stretch twice (after a rewind) counts it once."""
        data, starts = _segment(3)
        flipped = bytearray(data)
        flipped[starts[1] + 14] ^= 0xFF
        reader = SegmentReader(bytes(flipped), starts[0])
        assert 2 == len(_bodies(reader))
        reader.offset = starts[0]
        assert 2 == len(_bodies(reader))
        assert 1 == reader.damaged


class TestClaim:
    """A claim locks a segment, records progress, and resumes from it."""

    def test_progress_survives_and_the_lock_excludes(self, tmp_path: Path) -> None:
        """ack() persists; a second claim waits for release(); a new one resumes."""
        data, starts = _segment(5)
        path = tmp_path / "1-x-1-a.seg"
        path.write_bytes(data)
        claim = Claim.take_lock(str(path))
        assert claim is not None
        assert 2 == len(claim.take(2, 1 << 20))
        claim.ack(starts[2])
        assert Claim.take_lock(str(path)) is None  # held
        claim.release()
        again = Claim.take_lock(str(path))
        assert again is not None
        assert [b'{"i":2}', b'{"i":3}', b'{"i":4}'] == [
            event.body for event, _ in again.take(10, 1 << 20)
        ]
        again.finish()
        assert not path.exists()

    def test_progress_past_the_end_replays_everything(self, tmp_path: Path) -> None:
        """A damaged progress field loses nothing: all again, one damage counted."""
        data, _ = _segment(3)
        broken = data[:8] + (10**9).to_bytes(8, "big") + data[16:]
        path = tmp_path / "1-x-1-a.seg"
        path.write_bytes(broken)
        claim = Claim.take_lock(str(path))
        assert claim is not None
        assert (3, 1) == (len(claim.take(10, 1 << 20)), claim.reader.damaged)
        claim.release()

    def test_a_lock_on_a_deleted_file_does_not_block_its_name(
        self, tmp_path: Path
    ) -> None:
        """A lock held on a deleted segment says nothing of a new file by its name."""
        data, _ = _segment(1)
        path = tmp_path / "1-x-1-a.seg"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path.unlink()
        path.write_bytes(data)
        try:
            claim = Claim.take_lock(str(path))
        finally:
            os.close(fd)
        assert claim is not None
        claim.release()

    def test_status_reads_without_locks(self, tmp_path: Path) -> None:
        """status() counts a segment another process holds, as busy."""
        data, _ = _segment(4)
        path = tmp_path / "00000000000000000001-x-1-a.seg"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            status = Spool(str(tmp_path), 1 << 20).status()
        finally:
            os.close(fd)
        assert (1, 4, 1, {"sb": 4}) == (
            status.segments,
            status.events,
            status.busy,
            dict(status.sandboxes),
        )


class TestSpoolerReplay:
    """A batch partly answered: the rest again, and never what went through."""

    def test_retries_resend_only_what_failed(self, tmp_path: Path) -> None:
        """Two failures of one event in a row: each other event is sent once, the
        attempts are kept, and the segment goes when all are done."""
        spooler = Spooler(Spool(str(tmp_path), 1 << 20), lambda: "sb")
        events = [EncodedEvent("log.info", b'{"i":%d}' % i) for i in range(10)]
        assert (10, 0) == spooler.write(events)
        sent: list[bytes] = []
        for round_ in range(3):
            batch = spooler.next_batch(100, 1 << 20)
            failing = [e for e in batch if e.body == b'{"i":2}']
            if round_ == 2:  # the third time it goes through
                failing = []
            sent += [e.body for e in batch if e not in failing]
            retry = [replace(e, attempts=e.attempts + 1) for e in failing]
            spooler.settle(SendResult(sent=len(batch) - len(retry), retry=retry))
            if round_:
                assert [b'{"i":2}'] == [e.body for e in batch]
                assert round_ == batch[0].attempts
        assert sorted(e.body for e in events) == sorted(sent)  # each once
        assert (10, []) == (spooler.replayed, list(tmp_path.glob("*.seg")))

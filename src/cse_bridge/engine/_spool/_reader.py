"""``SegmentReader``: the events of a segment's bytes, skipping what is damaged."""

from __future__ import annotations

import zlib

from .._types import EncodedEvent
from ._format import FRAME_HEAD, MAX_PAYLOAD, SYNC, decode_payload

__all__ = ["SegmentReader"]


class SegmentReader:
    """
    Reads frames from *data* starting at offset *start*; never raises on bad bytes.

    A frame whose length runs past the end, whose checksum does not match or whose
    payload does not decode is damage: the reader searches for the next ``SYNC``
    and goes on. Each damaged stretch counts once in ``damaged``, whatever its
    length (a torn last frame is one, a scribbled-over middle is one).
    """

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.offset = start
        """Where the next frame starts."""
        self.damaged = 0
        """Damaged stretches skipped so far (each once, even if read again)."""
        self._in_damage = False
        self._seen: set[int] = set()

    @property
    def at_end(self) -> bool:
        """True once every byte was read or skipped."""
        return self.offset >= len(self.data)

    def next(self) -> tuple[EncodedEvent, int] | None:
        """Return the next intact event and the offset just past it, or None at end."""
        data, end = self.data, len(self.data)
        while self.offset < end:
            at = self.offset
            event = self._frame_at(at)
            if event is not None:
                self._in_damage = False
                return event
            if not self._in_damage:
                self._in_damage = True
                if at not in self._seen:  # not one read before a rewind
                    self._seen.add(at)
                    self.damaged += 1
            found = data.find(SYNC, at + 1)
            self.offset = end if found < 0 else found
        return None

    def _frame_at(self, at: int) -> tuple[EncodedEvent, int] | None:
        data = self.data
        if at + FRAME_HEAD.size > len(data):
            return None
        sync, size, crc = FRAME_HEAD.unpack_from(data, at)
        start = at + FRAME_HEAD.size
        stop = start + size
        if sync != SYNC or size > MAX_PAYLOAD or stop > len(data):
            return None
        payload = data[start:stop]
        if zlib.crc32(payload) != crc:
            return None
        try:
            kind, body, items = decode_payload(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        self.offset = stop
        return EncodedEvent(kind, body, items=items), stop

    def count(self) -> tuple[int, int]:
        """Read to the end; return the intact events and the items they carry."""
        events = items = 0
        while (found := self.next()) is not None:
            events += 1
            items += found[0].items
        return events, items

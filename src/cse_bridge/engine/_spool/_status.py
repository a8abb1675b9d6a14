"""``SpoolStatus``: what waits in a spool directory (``Spool.status``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SpoolStatus"]


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """A snapshot of a spool directory, read without taking any lock."""

    directory: str
    segments: int
    """Segment files."""
    events: int
    """Events waiting (a packed ``log.batch`` counts the records it carries)."""
    bytes: int
    """Bytes of every segment file."""
    oldest: float | None
    """When the oldest segment was created (Unix seconds), or None if empty."""
    sandboxes: Mapping[str, int]
    """Events waiting per sandbox."""
    damaged: int
    """Damaged stretches a replay will skip."""
    busy: int
    """Segments a live process holds now (being written or replayed)."""

"""
The records an event carries: one, or the ``log.batch`` engine packs several into.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from ..models import SandboxEvent

__all__ = ["PACKED_TYPE", "records"]

PACKED_TYPE: Final = "log.batch"
"""An event whose ``data.records`` are ``{"type", "data"}`` log records."""


def records(event: SandboxEvent) -> Iterator[tuple[str, Mapping[str, object]]]:
    """
    Yield ``(type, data)`` for each record in *event*; a ``log.batch`` is unpacked.

    Malformed entries of a batch are skipped; never raises. CPU only.
    """
    if event.type != PACKED_TYPE:
        yield event.type, event.data
        return
    items = event.data.get("records")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        kind, data = item.get("type"), item.get("data")
        if isinstance(kind, str) and isinstance(data, Mapping):
            yield kind, data

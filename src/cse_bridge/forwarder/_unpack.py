"""
The records an event carries: one, or the ``log.batch`` (log records) and
``trace.batch`` (spans) the engine packs several into.

A ``log.<level>`` record sent by hand may lack ``timeUnixNano`` or ``level``: it gets
the event's stored time and the level its type names, so it is neither dated 1970
nor shown at another level than ``cse-bridge tail`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Final

from ..models import SandboxEvent

__all__ = ["PACKED_SPANS_TYPE", "PACKED_TYPE", "records"]

PACKED_TYPE: Final = "log.batch"
"""An event whose ``data.records`` are ``{"type", "data"}`` log records."""
PACKED_SPANS_TYPE: Final = "trace.batch"
"""An event whose ``data.records`` are ``{"type", "data"}`` ``trace.span`` records."""
_PACKED: Final = frozenset({PACKED_TYPE, PACKED_SPANS_TYPE})


def records(event: SandboxEvent) -> Iterator[tuple[str, Mapping[str, object]]]:
    """
    Yield ``(type, data)`` for each record in *event*; a ``log.batch`` or
    ``trace.batch`` is unpacked.

    Malformed entries of a batch are skipped; never raises. CPU only.
    """
    if event.type not in _PACKED:
        yield event.type, _with_fallbacks(event, event.type, event.data)
        return
    items = event.data.get("records")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        kind, data = item.get("type"), item.get("data")
        if isinstance(kind, str) and isinstance(data, Mapping):
            yield kind, _with_fallbacks(event, kind, data)


def _with_fallbacks(
    event: SandboxEvent, kind: str, data: Mapping[str, object]
) -> Mapping[str, object]:
    """*data* of a ``log.*`` record with a time and a level; others unchanged."""
    if not kind.startswith("log."):
        return data
    time_ns = data.get("timeUnixNano")
    has_time = isinstance(time_ns, int) and not isinstance(time_ns, bool) and time_ns
    level = kind[4:].upper()
    known = isinstance(logging.getLevelName(level), int)
    has_level = isinstance(data.get("level"), str) or not known
    if has_time and has_level:
        return data
    filled = dict(data)
    if not has_time:
        filled["timeUnixNano"] = event.timestamp * 1_000_000
    if not has_level:
        filled["level"] = level
        filled.pop("levelno", None)  # without a level, the type is the truth
    return filled

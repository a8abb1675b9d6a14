"""
Output helpers for ``cse-bridge``.

Lines that a pipe sees at once, the events table, files written atomically, and the
message for a missing extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ._args import EXIT_ERROR

if TYPE_CHECKING:
    from ..models import SandboxEvent

_DATA_WIDTH: Final = 120
_GATEWAY_EXTRA: Final = "pip install 'cse-bridge[gateway]'"


def _write_line(text: str, stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    out.write(text + "\n")
    out.flush()  # a reader of the pipe sees each line at once


def _missing_extra(command: str, exc: ImportError) -> int:
    _write_line(
        f"cse-bridge {command}: needs the gateway extra ({exc.name or exc}): "
        f"{_GATEWAY_EXTRA}",
        sys.stderr,
    )
    return EXIT_ERROR


def _format_time(millis: int) -> str:
    when = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _compact(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _DATA_WIDTH else text[: _DATA_WIDTH - 3] + "..."


def _write_table(events: Iterable[SandboxEvent]) -> None:
    _write_line(f"{'TIME':<24}  {'TYPE':<20}  {'ID':<36}  DATA")
    for event in events:
        _write_line(
            f"{_format_time(event.timestamp):<24}  {event.type:<20}  "
            f"{event.id:<36}  {_compact(event.data)}"
        )


def _write_atomically(path: Path, text: str) -> None:
    """Write *text* to *path* so that a reader sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

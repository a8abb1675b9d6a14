"""
What ``cse-bridge tail`` prints: one readable line per event, or one JSON line.

Pure functions, no I/O: the CLI decides where the lines go and whether to colour.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Final

from ..models import SandboxEvent

__all__ = ["render_json", "render_line"]

_WIDTH: Final = 160
_RESET: Final = "\x1b[0m"
_LEVEL_COLOURS: Final = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}


def _clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def render_line(event: SandboxEvent, *, colour: bool = False) -> str:
    """
    Return ``HH:MM:SS.mmm TYPE [LEVEL] text`` for *event* (local time).

    ``log.*`` events show their logger and message (the level coloured when
    *colour*); others show their data as compact JSON.
    """
    when = datetime.fromtimestamp(event.timestamp / 1000, tz=timezone.utc).astimezone()
    stamp = when.strftime("%H:%M:%S.") + f"{event.timestamp % 1000:03d}"
    data = event.data
    if event.type.startswith("log.") and isinstance(data.get("message"), str):
        level = event.type[4:]
        label = f"{level.upper():<8}"
        if colour and level in _LEVEL_COLOURS:
            label = f"{_LEVEL_COLOURS[level]}{label}{_RESET}"
        logger = data.get("logger")
        prefix = f"{logger}: " if isinstance(logger, str) and logger else ""
        text = prefix + data["message"]
        exception = data.get("exception")
        if isinstance(exception, dict) and exception.get("type"):
            text += f" [{exception.get('type')}: {exception.get('message', '')}]"
        return f"{stamp} {label} {_clip(text)}"
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{stamp} {event.type:<20} {_clip(compact)}"


def render_json(event: SandboxEvent) -> str:
    """Return *event* as one line of JSON (its wire form)."""
    return json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))

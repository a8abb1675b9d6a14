"""
Output helpers for ``cse-bridge``.

Lines that a pipe sees at once, the events table, files written atomically, and the
one-line description of an ``EventsError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .. import config
from ..errors import EventsError, EventsNetworkError

if TYPE_CHECKING:
    from ..models import SandboxEvent

_DATA_WIDTH: Final = 120


def _write_line(text: str, stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    out.write(text + "\n")
    out.flush()  # a reader of the pipe sees each line at once


def url_origin(flag: str | None) -> tuple[str, str]:
    """Return the gateway URL the commands use and where it came from, for messages."""
    url = config.resolve_gateway_url(flag)
    if flag:
        return url, "from --gateway-url"
    if os.environ.get(config.ENV_GATEWAY_URL):
        return url, f"from {config.ENV_GATEWAY_URL}"
    return url, (
        f"the default; set --gateway-url or {config.ENV_GATEWAY_URL} for another"
    )


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """*exc* and every exception it wraps (causes, urllib3's reasons, arguments)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, *current.args]
        linked.append(getattr(current, "reason", None))
        todo.extend(e for e in linked if isinstance(e, BaseException))


def _network_reason(exc: EventsNetworkError) -> str:
    causes = list(_causes(exc))
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "nothing answers there (connection refused)"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "its host name does not resolve"
    if any(isinstance(c, TimeoutError) for c in causes) or exc.message.startswith(
        "Request timeout"
    ):
        return "it did not answer in time (--timeout)"
    return exc.message.removeprefix("Network error: ")


def _server_message(text: str) -> str:
    """The ``error`` of a ``{"success": false, "error": ...}`` body, else the text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return text


def describe_error(exc: EventsError, gateway_url_flag: str | None = None) -> str:
    """
    Return one line about *exc* for a person at a terminal.

    A network error names the URL tried and where it came from; an answer of the
    gateway shows its message and keeps the HTTP status.
    """
    if isinstance(exc, EventsNetworkError):
        url, origin = url_origin(gateway_url_flag)
        return f"cannot reach the gateway at {url} ({origin}): {_network_reason(exc)}"
    status = "" if exc.status_code is None else f" (HTTP {exc.status_code})"
    return _server_message(exc.message) + status


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

"""
``cse-bridge spool status|flush|clear``: what waits in a spool directory, sending
it now with the current credentials, or deleting it (docs/how-to/spool.md).

The core install is enough: the spool and the events exporter are the engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Final

from .. import config
from ..engine import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_SIZE,
    ENV_SPOOL_DIR,
    EventsSink,
    Spool,
    Spooler,
    SpoolStatus,
)
from ._args import EXIT_ERROR, EXIT_OK, UsageError, _positive_float
from ._io import _write_line

_NO_BOUND: Final = 1 << 62
"""The CLI never writes, so the byte bound does not matter to it."""
DEFAULT_FLUSH_TIMEOUT: Final = 30.0


def add_parsers(commands: Any) -> None:
    """Add the ``spool`` command and its ``status``, ``flush``, ``clear`` actions."""
    spool = commands.add_parser(
        "spool",
        help="show, send or delete what waits in a spool directory",
        description=(
            "Records an engine could not send wait in its spool directory "
            f"(spool_dir= or ${ENV_SPOOL_DIR}) until an engine with a token for "
            "their sandbox sends them. Look at them, send them now, or delete them."
        ),
    )
    actions = spool.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(spool)
    )
    status = actions.add_parser(
        "status",
        help="what waits: events, bytes, oldest, sandboxes",
        description="Show what waits in the spool directory; reads without locks.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    flush = actions.add_parser(
        "flush",
        help="send what waits now, with the current credentials",
        description=(
            "Send the spooled events of the token's sandbox (or --sandbox) to the "
            "gateway, oldest first, and delete each segment once all of it was "
            "acknowledged. Segments a running program holds are left to it."
        ),
    )
    flush.add_argument(
        "--token", help=f"access token (default: ${config.ENV_ACCESS_TOKEN})"
    )
    flush.add_argument(
        "--gateway-url",
        metavar="URL",
        help=f"gateway base URL (default: ${config.ENV_GATEWAY_URL}, else "
        f"{config.DEFAULT_GATEWAY_URL})",
    )
    flush.add_argument(
        "--sandbox",
        metavar="ID",
        help="send this sandbox's events with the token (default: the sandbox the "
        "token names)",
    )
    flush.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_FLUSH_TIMEOUT,
        metavar="SECONDS",
        help="the longest one batch of sends may take",
    )
    clear = actions.add_parser(
        "clear",
        help="delete what waits",
        description=(
            "Delete the spooled events (of --sandbox only, if given). Segments a "
            "running program holds are left to it."
        ),
    )
    clear.add_argument(
        "--sandbox", metavar="ID", help="only this sandbox's (default: every one)"
    )
    for action, run in (
        (status, _cmd_status),
        (flush, _cmd_flush),
        (clear, _cmd_clear),
    ):
        action.add_argument(
            "--spool-dir",
            metavar="DIR",
            help=f"the spool directory (default: ${ENV_SPOOL_DIR})",
        )
        action.set_defaults(run=run, command_parser=action)


def _spool(args: argparse.Namespace) -> Spool:
    directory = args.spool_dir or os.environ.get(ENV_SPOOL_DIR, "").strip()
    if not directory:
        raise UsageError(f"no spool directory: give --spool-dir or set {ENV_SPOOL_DIR}")
    directory = os.path.expanduser(directory)
    if not os.path.isdir(directory):
        raise UsageError(f"no spool directory at {directory}")
    return Spool(directory, _NO_BOUND)


def _when(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(seconds: float) -> str:
    left = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            return f"{left // size}{unit}"
    return f"{left}s"


def _status_json(status: SpoolStatus) -> dict[str, Any]:
    return {
        "directory": status.directory,
        "segments": status.segments,
        "events": status.events,
        "bytes": status.bytes,
        "oldest": None if status.oldest is None else _when(status.oldest),
        "sandboxes": dict(status.sandboxes),
        "damaged": status.damaged,
        "busy": status.busy,
    }


def _cmd_status(args: argparse.Namespace) -> int:
    status = _spool(args).status()
    if args.json:
        _write_line(json.dumps(_status_json(status)))
        return EXIT_OK
    if not status.segments:
        _write_line(f"{status.directory}: nothing waits")
        return EXIT_OK
    oldest = ""
    if status.oldest is not None:
        oldest = f", oldest {_when(status.oldest)} ({_ago(time.time() - status.oldest)}"
        oldest += " ago)"
    plural = "s" if status.segments != 1 else ""
    _write_line(
        f"{status.directory}: {status.events} events in {status.segments} "
        f"segment{plural}, {status.bytes} bytes{oldest}"
    )
    if status.damaged:
        _write_line(f"  {status.damaged} damaged stretches will be skipped")
    if status.busy:
        _write_line(f"  {status.busy} segments held by a running program now")
    width = max(len(name) for name in status.sandboxes) if status.sandboxes else 0
    for name, count in sorted(status.sandboxes.items()):
        _write_line(f"  {name:<{width}}  {count}")
    return EXIT_OK


def _cmd_flush(args: argparse.Namespace) -> int:
    spool = _spool(args)
    token = config.resolve_access_token(args.token)
    if not token:
        raise UsageError(
            f"an access token is required: --token or {config.ENV_ACCESS_TOKEN}"
        )
    try:
        sink = EventsSink(args.gateway_url, token)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    sandbox = args.sandbox or sink.spool_sandbox()
    if (
        args.sandbox is None
        and config.sandbox_from_token(token) is None
        and sandbox not in spool.status().sandboxes
    ):
        sink.close(1.0)
        raise UsageError(
            "the access token names no sandbox (is it a sandbox access token?) and "
            "nothing was spooled under it: pass --sandbox ID"
        )
    spooler = Spooler(spool, lambda: sandbox)
    error: str | None = None
    try:
        while batch := spooler.next_batch(
            DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_BYTES
        ):
            result = sink.send(batch, time.monotonic() + args.timeout)
            delivered, refused = spooler.settle(result)
            if result.retry and not (delivered or refused):
                error = result.permanent or result.error or "no answer"
                break
    finally:
        spooler.close()
        sink.close(1.0)
    left = sum(
        count for name, count in spool.status().sandboxes.items() if name == sandbox
    )
    summary = (
        f"sent {spooler.replayed} events of sandbox {sandbox} from {spool.directory}"
    )
    extras = [
        f"{spooler.refused} refused by the gateway" if spooler.refused else "",
        f"{spooler.damaged} damaged stretches skipped" if spooler.damaged else "",
        f"{left} still waiting" if left else "",
    ]
    summary += "".join(f"; {extra}" for extra in extras if extra)
    if error is not None:
        _write_line(
            f"cse-bridge spool flush: cannot send ({error}); {summary}", sys.stderr
        )
        return EXIT_ERROR
    _write_line(summary)
    return EXIT_OK


def _cmd_clear(args: argparse.Namespace) -> int:
    spool = _spool(args)
    deleted, events, busy = spool.clear(args.sandbox)
    line = f"deleted {events} events in {deleted} segments from {spool.directory}"
    if busy:
        line += f"; {busy} segments held by a running program were left"
    _write_line(line)
    return EXIT_OK

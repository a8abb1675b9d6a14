"""
``cse-bridge``: run a local gateway, issue tokens, store and list events.

``send`` and ``events`` need the core install only; ``gateway`` and ``token`` import
the gateway (the ``gateway`` extra) when they run, and say so if it is missing.
Exit codes: 0 success, 1 an error from the events API or the gateway, 2 bad usage.

Each subcommand module registers its own parsers with ``add_parsers(commands)``:
``_gateway`` (gateway), ``_events`` (token, send, events), ``_tail`` (tail) and
``cse_bridge.forwarder._cli`` (forward, demo, imported when the parser is built).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import EventsError
from . import _events, _gateway, _tail
from ._args import EXIT_ERROR, EXIT_USAGE, UsageError
from ._args import EXIT_OK as EXIT_OK  # the exit codes, all three, stay here
from ._io import _write_line

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``cse-bridge`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cse-bridge",
        description="ComputeSDK events: a local gateway, tokens, and event I/O.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _gateway.add_parsers(commands)  # gateway
    _events.add_parsers(commands)  # token, send, events
    _tail.add_parsers(commands)  # tail
    from ..forwarder._cli import add_parsers  # forward, demo

    add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run ``cse-bridge`` with *argv* (default ``sys.argv[1:]``); return the exit code.

    Blocks as long as the command runs (``gateway``: until SIGINT or SIGTERM).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"cse-bridge {args.command}: error: {exc}\n")
    except EventsError as exc:
        status = "" if exc.status_code is None else f" (HTTP {exc.status_code})"
        _write_line(f"cse-bridge {args.command}: {exc.message}{status}", sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's own
        # flush at exit from failing on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code

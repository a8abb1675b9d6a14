"""
``cse-bridge``: a local gateway, tokens, and storing, listing, following, forwarding.

``send``, ``events`` and ``token`` need the core install only; ``gateway`` imports the
gateway (the ``gateway`` extra), ``tail``, ``forward`` and ``demo`` the subscriber
(the ``redis`` extra) when they run, and say in one line what to install if missing.
The exit status is the same convention for every command (see ``_args``).

Each subcommand module registers its own parsers with ``add_parsers(commands)``:
``_gateway`` (gateway), ``_events`` (token, send, events), ``_tail`` (tail),
``_forward`` (forward), ``_demo`` (demo) and ``_spool`` (spool). This package is
the only one that writes to the terminal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ..errors import EventsError
from . import _demo, _events, _forward, _gateway, _spool, _tail
from ._args import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    MissingExtra,
    Parser,
    Terminated,
    UsageError,
)
from ._args import EXIT_OK as EXIT_OK  # the exit codes stay importable here
from ._io import _write_line, describe_error

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``cse-bridge`` argument parser (every subcommand included)."""
    from .. import __version__

    parser = Parser(
        prog="cse-bridge",
        description="ComputeSDK events: a local gateway, tokens, and event I/O.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cse-bridge {__version__} (Python {sys.version.split()[0]})",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    _gateway.add_parsers(commands)  # gateway
    _events.add_parsers(commands)  # token, send, events
    _tail.add_parsers(commands)  # tail
    _forward.add_parsers(commands)  # forward
    _demo.add_parsers(commands)  # demo
    _spool.add_parsers(commands)  # spool status|flush|clear
    for subparser in commands.choices.values():  # for errors after parsing
        subparser.set_defaults(command_parser=subparser)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM during the cleanup ends the process the default way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run ``cse-bridge`` with *argv* (default ``sys.argv[1:]``); return the exit code.

    Blocks as long as the command runs (``gateway``, ``tail``, ``forward``: until
    SIGINT or SIGTERM). Call from the main thread: it handles SIGTERM while it runs.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = args.command_parser
    if unknown:  # the subcommand's usage, not the top-level one
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    main_thread = threading.current_thread() is threading.main_thread()
    previous: Any = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        code: int = args.run(args)
    except UsageError as exc:
        command.exit(EXIT_USAGE, f"cse-bridge {args.command}: error: {exc}\n")
    except MissingExtra as exc:
        _write_line(f"cse-bridge {args.command}: {exc}", sys.stderr)
        return EXIT_ERROR
    except EventsError as exc:
        message = describe_error(exc, getattr(args, "gateway_url", None))
        _write_line(f"cse-bridge {args.command}: {message}", sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's own
        # flush at exit from failing on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Terminated:
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return code

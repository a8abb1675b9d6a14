"""
``cse-bridge tail``: follow a sandbox's events live, like ``kubectl logs -f``.

The command imports the subscriber (the ``redis`` extra) only when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import config
from ._args import EXIT_OK, SINCE_HELP, UsageError, _port, _since, missing_extra
from ._io import _write_line, describe_error
from ._render import render_json, render_line


def add_parsers(commands: Any) -> None:
    """Add the ``tail`` subcommand to ``cse-bridge``'s parser."""
    tail = commands.add_parser(
        "tail",
        help="follow a sandbox's events live (needs an access token)",
        description=(
            "Print events as they are stored, until Ctrl-C, like `kubectl logs -f`. "
            "With --since, print the history first, then follow without a gap or "
            "duplicate at the seam (needs an API key); with an API key, reconnects "
            "backfill what was missed."
        ),
    )
    tail.add_argument("sandbox", metavar="SANDBOX", help="sandbox id")
    tail.add_argument(
        "--token",
        help=f"the sandbox's access token (default: ${config.ENV_ACCESS_TOKEN})",
    )
    add_follow_options(tail)
    tail.add_argument(
        "--type",
        metavar="GLOB",
        help="only types matching this glob, e.g. 'log.*' (default: every type)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.set_defaults(run=_cmd_tail)


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    """The options ``tail`` and ``forward`` share: history, credentials, addresses."""
    parser.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help=f"history first: {SINCE_HELP}; needs an API key (default: live only)",
    )
    parser.add_argument(
        "--api-key",
        help=f"API key, for --since and gap-free reconnects (default: "
        f"${config.ENV_API_KEY})",
    )
    parser.add_argument(
        "--gateway-url",
        metavar="URL",
        help=f"gateway base URL, for history (default: ${config.ENV_GATEWAY_URL}, "
        f"else {config.DEFAULT_GATEWAY_URL})",
    )
    parser.add_argument(
        "--host",
        help=f"pub/sub host (default: ${config.ENV_PUBSUB_HOST}, else "
        f"{config.DEFAULT_PUBSUB_HOST})",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help=f"pub/sub port (default: ${config.ENV_PUBSUB_PORT}, else "
        f"{config.DEFAULT_PUBSUB_PORT})",
    )


def _cmd_tail(args: argparse.Namespace) -> int:
    try:
        from ..subscriber import PubSubClient
    except ImportError as exc:
        raise missing_extra(exc, "redis") from None
    import fnmatch

    since = args.since
    try:
        client = PubSubClient(
            sandbox_id=args.sandbox,
            access_token=args.token,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            gateway_url=args.gateway_url,
            since=since,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if since is not None and not config.resolve_api_key(args.api_key):
        raise UsageError(f"--since needs an API key: --api-key or {config.ENV_API_KEY}")
    if not config.resolve_access_token(args.token):
        raise UsageError(
            f"an access token is required: --token or {config.ENV_ACCESS_TOKEN}"
        )
    client.on(
        "error",
        lambda exc: _write_line(
            f"cse-bridge tail: {describe_error(exc, args.gateway_url)}", sys.stderr
        ),
    )
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        for event in client.stream():
            if args.type and not fnmatch.fnmatchcase(event.type, args.type):
                continue
            _write_line(
                render_json(event) if args.json else render_line(event, colour=colour)
            )
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends: a clean exit
    finally:
        client.disconnect(timeout=2.0)
    return EXIT_OK

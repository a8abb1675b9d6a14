"""
``cse-bridge token``, ``send`` and ``events``: argument parsing and the commands.

All three need the core install only: ``token`` signs with the standard library.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from .. import config
from ..client import EventsClient
from ._args import (
    EXIT_OK,
    SINCE_HELP,
    UsageError,
    _non_negative_float,
    _positive_int,
    _since,
    _workspace,
    read_json_object,
)
from ._gateway import DEMO_WORKSPACE
from ._io import _write_line, _write_table

if TYPE_CHECKING:
    from ..models import SandboxEvent

DEFAULT_LIST_LIMIT: Final = 100
"""``events`` without --since or --limit shows the newest 100, like the API."""


def add_parsers(commands: Any) -> None:
    """Add the ``token``, ``send`` and ``events`` subcommands to ``cse-bridge``."""
    tok = commands.add_parser(
        "token",
        help="print an access token for a sandbox",
        description=(
            "Print an HS256 access token that a gateway with this secret accepts. A "
            "running `cse-bridge gateway` that generated its secret prints it as "
            f"`export {config.ENV_GATEWAY_SECRET}=...`: paste that, then mint tokens "
            "for any sandbox."
        ),
    )
    tok.add_argument(
        "--secret",
        help=f"the gateway's secret (default: ${config.ENV_GATEWAY_SECRET})",
    )
    tok.add_argument(
        "--store",
        metavar="URL",
        help="read the secret a gateway generated beside this sqlite store "
        "(default: none)",
    )
    tok.add_argument("--sandbox", required=True, metavar="ID", help="sandbox id")
    tok.add_argument(
        "--workspace",
        type=_workspace,
        default=DEMO_WORKSPACE,
        metavar="N",
        help="the workspace the sandbox belongs to",
    )
    tok.add_argument(
        "--ttl",
        type=_non_negative_float,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime; 0 for a token that never expires",
    )
    tok.set_defaults(run=_cmd_token)

    send = commands.add_parser(
        "send",
        help="store one event (needs an access token)",
        description="Store one event and print the result as JSON.",
    )
    send.add_argument("type", metavar="TYPE", help="event type, e.g. custom")
    send.add_argument(
        "--data",
        metavar="JSON|@FILE|-",
        help="the event's data: a JSON object, @FILE to read it from a file, or - "
        "for stdin (default: {})",
    )
    send.add_argument(
        "--token", help=f"access token (default: ${config.ENV_ACCESS_TOKEN})"
    )
    _add_client_options(send)
    send.set_defaults(run=_cmd_send)

    events = commands.add_parser(
        "events",
        help="list a sandbox's events (needs an API key)",
        description=(
            "List events oldest first. Without --since or --limit: the newest 100. "
            "Pages past the API's 1000-event limit by itself."
        ),
    )
    events.add_argument("sandbox", metavar="SANDBOX", help="sandbox id")
    events.add_argument(
        "--type", help="only events of exactly this type (default: every type)"
    )
    events.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help=SINCE_HELP + " (default: the newest 100)",
    )
    events.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help=f"at most N events (default: {DEFAULT_LIST_LIMIT} without --since, "
        "every one with it)",
    )
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.add_argument("--api-key", help=f"API key (default: ${config.ENV_API_KEY})")
    _add_client_options(events)
    events.set_defaults(run=_cmd_events)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway-url",
        metavar="URL",
        help=f"gateway base URL (default: ${config.ENV_GATEWAY_URL}, else "
        f"{config.DEFAULT_GATEWAY_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help=f"per connect and per read (default: {config.DEFAULT_TIMEOUT:g})",
    )


def _client(
    args: argparse.Namespace,
    *,
    api_key: str | None = None,
    access_token: str | None = None,
) -> EventsClient:
    try:
        return EventsClient(
            gateway_url=args.gateway_url,
            api_key=api_key,
            access_token=access_token,
            timeout=args.timeout or None,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _cmd_send(args: argparse.Namespace) -> int:
    with _client(args, access_token=args.token) as client:
        if not client.has_access_token:
            raise UsageError(
                f"an access token is required: --token or {config.ENV_ACCESS_TOKEN}"
            )
        data = None if args.data is None else read_json_object(args.data)
        try:
            result = client.store_event(args.type, data)
        except (TypeError, ValueError) as exc:  # an empty type, data not JSON-safe
            raise UsageError(str(exc)) from None
    _write_line(
        json.dumps(
            {
                "eventId": result.event_id,
                "sandboxId": result.sandbox_id,
                "type": result.type,
                "timestamp": result.timestamp,
            }
        )
    )
    return EXIT_OK


def _select_events(
    client: EventsClient,
    sandbox: str,
    event_type: str | None,
    since: int | None,
    limit: int | None,
) -> Iterable[SandboxEvent]:
    if since is not None:
        found = client.iter_events(sandbox, type=event_type, since=since)
        return found if limit is None else itertools.islice(found, limit)
    count = DEFAULT_LIST_LIMIT if limit is None else limit
    if count <= 1000:  # noqa: PLR2004 - the API's largest page
        return client.get_events(sandbox, type=event_type, limit=count)
    # The newest N for N > 1000: the API pages forward only, so read all, keep N.
    return collections.deque(client.iter_events(sandbox, type=event_type), count)


def _cmd_events(args: argparse.Namespace) -> int:
    with _client(args, api_key=args.api_key) as client:
        if not client.has_api_key:
            raise UsageError(
                f"an API key is required: --api-key or {config.ENV_API_KEY}"
            )
        try:
            found = iter(
                _select_events(client, args.sandbox, args.type, args.since, args.limit)
            )
            # The first page before any output: an error is then the only output.
            first = next(found, None)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if first is not None:
            found = itertools.chain([first], found)
        if args.json:
            for event in found:
                _write_line(json.dumps(event.to_json(), ensure_ascii=False))
        else:
            _write_table(found)
    return EXIT_OK


def _cmd_token(args: argparse.Namespace) -> int:
    from ..gateway import issue_token, resolve_secret  # the standard library only

    secret = args.secret or os.environ.get(config.ENV_GATEWAY_SECRET) or None
    if secret is None and args.store is None:
        raise UsageError(
            f"a secret is required: --secret, {config.ENV_GATEWAY_SECRET} or --store"
        )
    if secret is None and not args.store.lower().startswith("sqlite:"):
        raise UsageError(
            f"--store {args.store}: only an sqlite store keeps its secret; use "
            f"--secret or {config.ENV_GATEWAY_SECRET} (a gateway that generated its "
            "secret prints it)"
        )
    try:
        secret, _ = resolve_secret(secret, args.store or "memory://")
        token = issue_token(secret, args.sandbox, args.workspace, ttl=args.ttl or None)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    _write_line(token)
    return EXIT_OK

"""
``cse-bridge``: run a local gateway, issue tokens, store and list events.

``send`` and ``events`` need the core install only; ``gateway`` and ``token`` import
the gateway (the ``gateway`` extra) when they run, and say so if it is missing.
Exit codes: 0 success, 1 an error from the events API or the gateway, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO
from urllib.parse import urlsplit, urlunsplit

from .. import config
from ..client import EventsClient
from ..errors import EventsError
from ..models import SandboxEvent

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2

DEMO_SANDBOX: Final = "sandbox-1"
"""The sandbox the gateway's ready-to-use access token names."""
DEMO_WORKSPACE: Final = 1
DEMO_TOKEN_TTL: Final = 30 * 24 * 3600
"""Lifetime of the printed access token, in seconds (30 days)."""
DEFAULT_LIST_LIMIT: Final = 100
"""``events`` without --since or --limit shows the newest 100, like the API."""
_DATA_WIDTH: Final = 120
_GATEWAY_EXTRA: Final = "pip install 'cse-bridge[gateway]'"


class UsageError(Exception):
    """Bad command-line input that argparse could not catch: exit code 2."""


# ---------------------------------------------------------------------------
# Argument types


def _api_key_pair(text: str) -> tuple[str, int]:
    key, sep, workspace = text.rpartition("=")
    if not sep or not key or not workspace.strip().isdigit():
        raise argparse.ArgumentTypeError(
            f"expected KEY=WORKSPACE (workspace a non-negative integer): {text!r}"
        )
    return key.strip(), int(workspace)


def _parse_api_keys(text: str) -> dict[str, int]:
    """Parse ``KEY=WORKSPACE,KEY=WORKSPACE`` (the CSE_GATEWAY_API_KEYS format)."""
    pairs = [part for part in (p.strip() for p in text.split(",")) if part]
    try:
        return dict(_api_key_pair(part) for part in pairs)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{config.ENV_GATEWAY_API_KEYS}: {exc}") from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:  # noqa: PLR2004 - the TCP port range
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text}")
    return value


def _since(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time (naive means UTC)."""
    if text.isdigit():
        return int(text)
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected milliseconds since the epoch or an ISO 8601 time: {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    millis = int(when.timestamp() * 1000)
    if millis < 0:
        raise argparse.ArgumentTypeError(f"before the epoch: {text!r}")
    return millis


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"k\": 1}'")
    return value


# ---------------------------------------------------------------------------
# The parser


def build_parser() -> argparse.ArgumentParser:
    """Return the ``cse-bridge`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cse-bridge",
        description="ComputeSDK events: a local gateway, tokens, and event I/O.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gw = commands.add_parser(
        "gateway",
        help="run a local events gateway (HTTP API + pub/sub)",
        description=(
            "Run a local events gateway until SIGINT or SIGTERM. Port 0 picks a free "
            "port. Without a secret or API key, prints ready-to-use credentials."
        ),
    )
    gw.add_argument("--host", default="127.0.0.1", help="address to bind")
    gw.add_argument("--port", type=_port, default=8080, help="HTTP port (8080)")
    gw.add_argument(
        "--pubsub-port", type=_port, default=6380, help="pub/sub port (6380)"
    )
    gw.add_argument(
        "--store",
        default="memory://",
        metavar="URL",
        help="memory:// (default), sqlite:///PATH, or "
        "redis://[:PASSWORD@]HOST:PORT/DB?prefix=NAME (shared by N gateways)",
    )
    gw.add_argument(
        "--secret",
        help=f"HS256 signing secret, 32+ bytes (env {config.ENV_GATEWAY_SECRET}); "
        "generated if absent (kept beside an sqlite store)",
    )
    gw.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        type=_api_key_pair,
        metavar="KEY=WORKSPACE",
        help=f"an API key and the workspace it reads; repeatable "
        f"(env {config.ENV_GATEWAY_API_KEYS}=K=W,K=W)",
    )
    gw.add_argument(
        "--retention", type=_positive_int, metavar="N", help="events kept per sandbox"
    )
    gw.add_argument(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT (Linux): several gateways on one Redis share the ports",
    )
    gw.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help='once serving, write {"http": URL, "pubsub": "HOST:PORT"} here',
    )
    gw.set_defaults(run=_cmd_gateway)

    tok = commands.add_parser(
        "token",
        help="print an access token for a sandbox",
        description="Print an HS256 access token that a gateway with SECRET accepts.",
    )
    tok.add_argument(
        "--secret", help=f"the gateway's secret (env {config.ENV_GATEWAY_SECRET})"
    )
    tok.add_argument(
        "--store",
        metavar="URL",
        help="read the secret a gateway generated beside this sqlite store",
    )
    tok.add_argument("--sandbox", required=True, metavar="ID", help="sandbox id")
    tok.add_argument(
        "--workspace", type=int, default=DEMO_WORKSPACE, metavar="N", help="(1)"
    )
    tok.add_argument(
        "--ttl",
        type=_non_negative_float,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime (3600); 0 for a token that never expires",
    )
    tok.set_defaults(run=_cmd_token)

    send = commands.add_parser(
        "send",
        help="store one event (needs an access token)",
        description="Store one event and print the result as JSON.",
    )
    send.add_argument("type", metavar="TYPE", help="event type, e.g. custom")
    send.add_argument(
        "--data", type=_json_object, default=None, metavar="JSON", help="JSON object"
    )
    send.add_argument("--token", help=f"access token (env {config.ENV_ACCESS_TOKEN})")
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
    events.add_argument("--type", help="only events of exactly this type")
    events.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only events after this: ms since the epoch or ISO 8601 (naive = UTC)",
    )
    events.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N events"
    )
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.add_argument("--api-key", help=f"API key (env {config.ENV_API_KEY})")
    _add_client_options(events)
    events.set_defaults(run=_cmd_events)
    _add_tail_parser(commands)
    from ..forwarder._cli import add_parsers  # forward, demo

    add_parsers(commands)
    return parser


def _add_tail_parser(commands: Any) -> None:
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
        "--type", metavar="GLOB", help="only types matching this glob, e.g. 'log.*'"
    )
    tail.add_argument(
        "--since",
        metavar="DURATION|MS",
        help="history first: a duration ago (10m, 2h, 30s) or ms since the epoch",
    )
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.add_argument("--token", help=f"access token (env {config.ENV_ACCESS_TOKEN})")
    tail.add_argument("--api-key", help=f"API key (env {config.ENV_API_KEY})")
    tail.add_argument(
        "--gateway-url",
        metavar="URL",
        help=f"gateway base URL, for backfills (env {config.ENV_GATEWAY_URL})",
    )
    tail.add_argument("--host", help=f"pub/sub host (env {config.ENV_PUBSUB_HOST})")
    tail.add_argument(
        "--port", type=_port, help=f"pub/sub port (env {config.ENV_PUBSUB_PORT})"
    )
    tail.set_defaults(run=_cmd_tail)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway-url",
        metavar="URL",
        help=f"gateway base URL (env {config.ENV_GATEWAY_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="per connect and per read (30)",
    )


# ---------------------------------------------------------------------------
# send / events


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
        result = client.store_event(args.type, args.data)
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
            found = _select_events(
                client, args.sandbox, args.type, args.since, args.limit
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            for event in found:
                _write_line(json.dumps(event.to_json(), ensure_ascii=False))
        else:
            _write_table(found)
    return EXIT_OK


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


def _write_line(text: str, stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    out.write(text + "\n")
    out.flush()  # a reader of the pipe sees each line at once


# ---------------------------------------------------------------------------
# tail


def _cmd_tail(args: argparse.Namespace) -> int:
    try:
        from ..subscriber import PubSubClient
        from ..subscriber._render import parse_since, render_json, render_line
    except ImportError as exc:
        _write_line(
            f"cse-bridge tail: needs redis-py ({exc.name or exc}): "
            "pip install 'cse-bridge[redis]'",
            sys.stderr,
        )
        return EXIT_ERROR
    import fnmatch

    try:
        since = None if args.since is None else parse_since(args.since)
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
        lambda exc: _write_line(f"cse-bridge tail: {exc}", sys.stderr),
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


# ---------------------------------------------------------------------------
# token


def _missing_extra(command: str, exc: ImportError) -> int:
    _write_line(
        f"cse-bridge {command}: needs the gateway extra ({exc.name or exc}): "
        f"{_GATEWAY_EXTRA}",
        sys.stderr,
    )
    return EXIT_ERROR


def _cmd_token(args: argparse.Namespace) -> int:
    try:
        from ..gateway import issue_token, resolve_secret
    except ImportError as exc:
        return _missing_extra("token", exc)
    secret = args.secret or os.environ.get(config.ENV_GATEWAY_SECRET) or None
    if secret is None and args.store is None:
        raise UsageError(
            f"a secret is required: --secret, {config.ENV_GATEWAY_SECRET} or --store"
        )
    try:
        secret, _ = resolve_secret(secret, args.store or "memory://")
        token = issue_token(secret, args.sandbox, args.workspace, ttl=args.ttl or None)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    _write_line(token)
    return EXIT_OK


# ---------------------------------------------------------------------------
# gateway


def _cmd_gateway(args: argparse.Namespace) -> int:
    try:
        from ..gateway import Gateway, GatewayConfig
    except ImportError as exc:
        return _missing_extra("gateway", exc)
    secret = args.secret or os.environ.get(config.ENV_GATEWAY_SECRET) or None
    if args.api_keys:
        api_keys = dict(args.api_keys)
    else:
        api_keys = _parse_api_keys(os.environ.get(config.ENV_GATEWAY_API_KEYS, ""))
    generated_key: str | None = None
    if not api_keys:
        import secrets

        generated_key = "cse_" + secrets.token_urlsafe(24)
        api_keys = {generated_key: DEMO_WORKSPACE}
    options: dict[str, Any] = {}
    if args.retention is not None:
        options["retention"] = args.retention
    settings = GatewayConfig(
        host=args.host,
        http_port=args.port,
        pubsub_port=args.pubsub_port,
        store_url=args.store,
        secret=secret,
        api_keys=api_keys,
        reuse_port=args.reuse_port,
        **options,
    )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        gateway = Gateway(settings)
    except ValueError as exc:  # a short secret, an unknown store URL
        raise UsageError(str(exc)) from None
    return asyncio.run(_serve(gateway, args.ready_file, generated_key))


async def _serve(
    gateway: Gateway, ready_file: Path | None, generated_key: str | None
) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a clean shutdown, 1 if it cannot start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await gateway.start()
    except OSError as exc:  # address in use, permission denied, bad path
        _write_line(f"cse-bridge gateway: cannot start: {exc}", sys.stderr)
        await gateway.stop()
        return EXIT_ERROR
    try:
        # The file first: whoever reads the announcement may look for it next.
        if ready_file is not None:
            try:
                _write_atomically(
                    ready_file,
                    json.dumps(
                        {"http": gateway.http_url, "pubsub": gateway.pubsub_address}
                    )
                    + "\n",
                )
            except OSError as exc:
                _write_line(f"cse-bridge gateway: cannot write {exc}", sys.stderr)
                ready_file = None  # not ours to remove
                return EXIT_ERROR
        _announce(gateway, generated_key)
        await stop.wait()
    finally:
        if ready_file is not None:
            with contextlib.suppress(OSError):
                ready_file.unlink()
        await gateway.stop()
    _write_line("cse-bridge gateway: stopped", sys.stderr)
    return EXIT_OK


def _redact_url(url: str) -> str:
    """Return *url* with any password replaced by ``***``, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _announce(gateway: Gateway, generated_key: str | None) -> None:
    """Print the addresses and, for a fresh setup, credentials a user can paste."""
    settings = gateway.config
    host, _, port = gateway.pubsub_address.rpartition(":")
    _write_line(
        f"cse-bridge gateway: serving HTTP on {gateway.http_url} and pub/sub on "
        f"{gateway.pubsub_address} (store {_redact_url(settings.store_url)})"
    )
    exports = {
        config.ENV_GATEWAY_URL: gateway.http_url,
        config.ENV_PUBSUB_HOST: host.strip("[]"),
        config.ENV_PUBSUB_PORT: port,
    }
    if gateway.secret_generated or generated_key is not None:
        api_key, workspace = _demo_key(settings.api_keys, generated_key)
        exports[config.ENV_ACCESS_TOKEN] = gateway.auth.issue_token(
            DEMO_SANDBOX, workspace, ttl=DEMO_TOKEN_TTL
        )
        exports[config.ENV_API_KEY] = api_key
        _write_line(
            f"# To use this gateway, paste into a shell (the token stores events for "
            f"{DEMO_SANDBOX!r} in workspace {workspace} for 30 days; the key reads "
            f"workspace {workspace}):"
        )
    else:
        _write_line("# To use this gateway, paste into a shell:")
    for name, value in exports.items():
        _write_line(f"export {name}={shlex.quote(str(value))}")


def _demo_key(api_keys: Mapping[str, int], generated: str | None) -> tuple[str, int]:
    """The key to print: the generated one, else one of the demo workspace if any."""
    if generated is not None:
        return generated, DEMO_WORKSPACE
    pairs = list(api_keys.items())
    for key, workspace in pairs:
        if workspace == DEMO_WORKSPACE:
            return key, workspace
    return pairs[0]


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


# ---------------------------------------------------------------------------
# main


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


if __name__ == "__main__":
    raise SystemExit(main())

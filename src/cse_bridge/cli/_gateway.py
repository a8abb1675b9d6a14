"""
``cse-bridge gateway``: run a local events gateway until SIGINT or SIGTERM.

The command imports the gateway (the ``gateway`` extra) only when it runs. Once
serving, it prints the addresses and, for a fresh setup, credentials to paste.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .. import config
from ._args import (
    EXIT_ERROR,
    EXIT_OK,
    UsageError,
    _api_key_pair,
    _non_negative_float,
    _parse_api_keys,
    _port,
    _positive_float,
    _positive_int,
    missing_extra,
)
from ._io import _write_atomically, _write_line

if TYPE_CHECKING:
    from ..gateway import Gateway, GatewayLimits

_T = TypeVar("_T")

DEMO_SANDBOX: Final = "sandbox-1"
"""The sandbox the gateway's ready-to-use access token names."""
DEMO_WORKSPACE: Final = 1
DEMO_TOKEN_TTL: Final = 30 * 24 * 3600
"""Lifetime of the printed access token, in seconds (30 days)."""


def add_parsers(commands: Any) -> None:
    """Add the ``gateway`` subcommand to ``cse-bridge``'s parser."""
    from ..gateway.stores import DEFAULT_RETENTION  # the standard library only

    gw = commands.add_parser(
        "gateway",
        help="run a local events gateway (HTTP API + pub/sub)",
        description=(
            "Run a local events gateway until SIGINT or SIGTERM. Port 0 picks a free "
            "port. Without a secret or API key, prints ready-to-use credentials."
        ),
    )
    gw.add_argument("--host", default="127.0.0.1", help="address to bind")
    gw.add_argument("--port", type=_port, default=8080, help="HTTP port")
    gw.add_argument("--pubsub-port", type=_port, default=6380, help="pub/sub port")
    gw.add_argument(
        "--store",
        default="memory://",
        metavar="URL",
        help="memory://, sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH (the "
        "directory must exist), or redis://[:PASSWORD@]HOST:PORT/DB?prefix=NAME "
        "(shared by N gateways)",
    )
    gw.add_argument(
        "--secret",
        help="HS256 signing secret, 32+ bytes (default: "
        f"${config.ENV_GATEWAY_SECRET}, else generated, kept beside an sqlite store "
        f"and printed as an export line)",
    )
    gw.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        type=_api_key_pair,
        metavar="KEY=WORKSPACE",
        help="an API key and the workspace it reads; repeatable (default: "
        f"${config.ENV_GATEWAY_API_KEYS}=K=W,K=W, else one generated for workspace "
        f"{DEMO_WORKSPACE})",
    )
    gw.add_argument(
        "--retention",
        type=_positive_int,
        metavar="N",
        help="events kept per sandbox, the oldest dropped first (default: "
        f"{DEFAULT_RETENTION})",
    )
    gw.add_argument(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT (Linux): several gateways on one Redis share the ports",
    )
    gw.add_argument(
        "--idle-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="close a connection that sends no complete HTTP request, idles between "
        "keep-alive requests, or does not SUBSCRIBE on pub/sub, for this long "
        f"(default: ${config.ENV_GATEWAY_IDLE_TIMEOUT}, else 60)",
    )
    gw.add_argument(
        "--max-connections",
        type=_positive_int,
        metavar="N",
        help="open connections allowed per port; more get HTTP 503 or pub/sub "
        f"-ERR (default: ${config.ENV_GATEWAY_MAX_CONNECTIONS}, else 10000, lowered "
        "to fit the open file limit)",
    )
    gw.add_argument(
        "--rate-limit",
        type=_positive_float,
        metavar="N",
        help="events per second each sandbox may store; past it, 429 with "
        f"Retry-After (default: ${config.ENV_GATEWAY_RATE_LIMIT}, else no limit)",
    )
    gw.add_argument(
        "--rate-burst",
        type=_positive_int,
        metavar="N",
        help="events a sandbox may store at once before --rate-limit applies "
        f"(default: ${config.ENV_GATEWAY_RATE_BURST}, else 2 seconds' worth)",
    )
    gw.add_argument(
        "--tls-cert",
        metavar="PATH",
        help="PEM certificate chain: serve HTTPS and TLS pub/sub (default: "
        f"${config.ENV_GATEWAY_TLS_CERT}, else plain TCP)",
    )
    gw.add_argument(
        "--tls-key",
        metavar="PATH",
        help=f"PEM private key of --tls-cert (default: ${config.ENV_GATEWAY_TLS_KEY})",
    )
    gw.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help='once serving, write {"http": URL, "pubsub": "HOST:PORT"} here '
        "(default: none)",
    )
    gw.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, how long requests in flight may take to finish "
        f"(default: ${config.ENV_GATEWAY_DRAIN_TIMEOUT}, else 10)",
    )
    gw.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="write one JSON line per HTTP request to stdout (default: "
        f"${config.ENV_GATEWAY_ACCESS_LOG}=1, else off)",
    )
    gw.set_defaults(run=_cmd_gateway)


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def _operations_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--drain-timeout`` and ``--access-log``: argument > environment > default."""
    options: dict[str, Any] = {}
    drain = args.drain_timeout
    if drain is None:
        text = os.environ.get(config.ENV_GATEWAY_DRAIN_TIMEOUT, "").strip()
        if text:
            try:
                drain = _non_negative_float(text)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{config.ENV_GATEWAY_DRAIN_TIMEOUT}: {exc}") from None
    if drain is not None:
        options["drain_timeout"] = drain
    access_log = args.access_log
    if access_log is None:
        text = os.environ.get(config.ENV_GATEWAY_ACCESS_LOG, "").strip().lower()
        if text not in _TRUE | _FALSE:
            raise UsageError(
                f"{config.ENV_GATEWAY_ACCESS_LOG}: expected 1 or 0 (true/false, "
                f"yes/no, on/off), not {text!r}"
            )
        access_log = text in _TRUE
    options["access_log"] = access_log
    return options


def _cmd_gateway(args: argparse.Namespace) -> int:
    try:
        from ..gateway import Gateway, GatewayConfig
    except ImportError as exc:
        raise missing_extra(exc, "gateway") from None
    _check_sqlite_directory(args.store)
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
    options = _operations_options(args)
    if args.retention is not None:
        options["retention"] = args.retention
    tls_cert = args.tls_cert or os.environ.get(config.ENV_GATEWAY_TLS_CERT) or None
    tls_key = args.tls_key or os.environ.get(config.ENV_GATEWAY_TLS_KEY) or None
    if (tls_cert is None) != (tls_key is None):
        raise UsageError(
            "TLS needs both --tls-cert and --tls-key (or "
            f"{config.ENV_GATEWAY_TLS_CERT} and {config.ENV_GATEWAY_TLS_KEY})"
        )
    settings = GatewayConfig(
        host=args.host,
        http_port=args.port,
        pubsub_port=args.pubsub_port,
        store_url=args.store,
        secret=secret,
        api_keys=api_keys,
        reuse_port=args.reuse_port,
        limits=_limits(args),
        tls_cert=tls_cert,
        tls_key=tls_key,
        **options,
    )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.access_log:
        _log_access_to_stdout()
    try:
        gateway = Gateway(settings)
    except ValueError as exc:  # a short secret, an unknown store URL
        if isinstance(exc.__cause__, ImportError):  # redis:// without the extra
            scheme = urlsplit(args.store).scheme
            raise missing_extra(exc.__cause__, what=f"--store {scheme}://") from None
        raise UsageError(str(exc)) from None
    return asyncio.run(_serve(gateway, args.ready_file, generated_key))


def _log_access_to_stdout() -> None:
    """Send the access log JSON lines, bare, to stdout; diagnostics stay on stderr."""
    from ..gateway import ACCESS_LOGGER

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def _limits(args: argparse.Namespace) -> GatewayLimits:
    """The limits of the flags, else of their variables, else the defaults."""
    from ..gateway import GatewayLimits

    defaults = GatewayLimits()
    return GatewayLimits(
        idle_timeout=_option(
            args.idle_timeout,
            config.ENV_GATEWAY_IDLE_TIMEOUT,
            _positive_float,
            defaults.idle_timeout,
        ),
        max_connections=_option(
            args.max_connections,
            config.ENV_GATEWAY_MAX_CONNECTIONS,
            _positive_int,
            defaults.max_connections,
        ),
        rate_limit=_option(
            args.rate_limit, config.ENV_GATEWAY_RATE_LIMIT, _positive_float, None
        ),
        rate_burst=_option(
            args.rate_burst, config.ENV_GATEWAY_RATE_BURST, _positive_int, None
        ),
    )


def _option(value: _T | None, env: str, parse: Callable[[str], _T], default: _T) -> _T:
    """The flag's *value*, else the variable *env* parsed, else *default*."""
    if value is not None:
        return value
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{env}: {exc}") from None


def _check_sqlite_directory(store_url: str) -> None:
    """
    Refuse an sqlite store whose directory does not exist, naming the full path.

    ``sqlite:///dir/x.db`` is relative to the working directory; a user who meant
    ``/dir/x.db`` would otherwise get a new ``./dir`` without a word.
    """
    parts = urlsplit(store_url)
    if parts.scheme.lower() != "sqlite" or parts.path in ("", "/", "/:memory:"):
        return
    directory = Path(parts.path[1:]).absolute().parent
    if not directory.is_dir():
        raise UsageError(
            f"--store {store_url}: the directory {directory} does not exist (create "
            "it first; sqlite:///PATH is relative to the working directory, "
            "sqlite:////PATH absolute)"
        )


async def _serve(
    gateway: Gateway, ready_file: Path | None, generated_key: str | None
) -> int:
    """
    Serve until SIGINT/SIGTERM, then drain; 0 after a clean shutdown, 1 if it cannot
    start. A second signal during the drain stops at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        if stop.is_set():  # the second signal: no more waiting
            for task in draining:
                task.cancel()
        stop.set()

    draining: list[asyncio.Task[bool]] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, signalled)
        except (NotImplementedError, RuntimeError):  # Windows: no loop handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(signalled))
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
        _write_line(
            "cse-bridge gateway: draining (a second signal stops at once)", sys.stderr
        )
        draining.append(asyncio.ensure_future(gateway.drain()))
        with contextlib.suppress(asyncio.CancelledError):
            if not await draining[0]:
                _write_line(
                    "cse-bridge gateway: drain timeout: requests still in flight "
                    "were cut off",
                    sys.stderr,
                )
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
    if gateway.tls is not None:  # clients also need the CA: SSL_CERT_FILE=...
        exports[config.ENV_PUBSUB_TLS] = "1"
    if gateway.secret_generated or generated_key is not None:
        api_key, workspace = _demo_key(settings.api_keys, generated_key)
        exports[config.ENV_ACCESS_TOKEN] = gateway.auth.issue_token(
            DEMO_SANDBOX, workspace, ttl=DEMO_TOKEN_TTL
        )
        exports[config.ENV_API_KEY] = api_key
        _write_line(
            f"# To use this gateway, paste into a shell (the token stores events for "
            f"{DEMO_SANDBOX!r} in workspace {workspace} for 30 days; the key reads "
            f"workspace {workspace}; `cse-bridge token --sandbox ID` mints more):"
        )
    else:
        _write_line("# To use this gateway, paste into a shell:")
    if gateway.secret_generated:  # `cse-bridge token` mints more tokens with it
        exports[config.ENV_GATEWAY_SECRET] = gateway.secret
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

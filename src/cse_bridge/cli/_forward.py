"""
``cse-bridge forward``: argument parsing and the run loop.

The command imports the forwarder (the ``redis`` extra) and, for ``--to otlp``, the
OTLP exporters only when it runs. The console (``_console``) shows forwarded records
on stdout, our diagnostics and the status line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import config
from ._args import (
    EXIT_ERROR,
    EXIT_OK,
    UsageError,
    _port,
    _positive_float,
    _positive_int,
    missing_extra,
)
from ._console import ConsoleHandler, console_logging
from ._io import _write_line
from ._status import StatusLine
from ._tail import add_follow_options

if TYPE_CHECKING:
    from ..forwarder import Forwarder, Sink
    from ..forwarder.metrics import MetricsServer

__all__ = [
    "SinkSpec",
    "add_parsers",
    "build_sinks",
    "cmd_forward",
    "parse_sink",
]


@dataclass(frozen=True)
class SinkSpec:
    """One ``--to`` value: ``logging``, ``otlp[=URL]`` or ``jsonl[=PATH]``."""

    kind: str
    target: str | None = None


def parse_sink(text: str) -> SinkSpec:
    """Parse a ``--to`` value; raise ``argparse.ArgumentTypeError`` if unknown."""
    kind, _, target = text.partition("=")
    kind = kind.strip().lower()
    if kind not in {"logging", "otlp", "jsonl"} or (kind == "logging" and target):
        raise argparse.ArgumentTypeError(
            f"expected logging, otlp[=URL] or jsonl[=PATH], not {text!r}"
        )
    return SinkSpec(kind, target or None)


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE: {text!r}")
    return key.strip(), value


def _token(text: str) -> tuple[str | None, str]:
    sandbox, sep, token = text.partition("=")
    # A JWT is base64url: it has no "=", so "ID=TOKEN" is unambiguous.
    return (sandbox, token) if sep and sandbox and token else (None, text)


def add_parsers(commands: Any) -> None:
    """Add the ``forward`` subcommand to ``cse-bridge``'s parser."""
    fwd = commands.add_parser(
        "forward",
        help="re-emit sandbox events into local logging, OTLP or JSON lines",
        description=(
            "Follow sandboxes live (history first with --since; resume with "
            "--state-file) and re-emit each event once: as logging records on stdout, "
            "as OTLP spans and logs, or as JSON lines. Runs until Ctrl-C or SIGTERM "
            "(exit 0). Diagnostics and the status line go to stderr."
        ),
    )
    fwd.add_argument(
        "--sandbox",
        action="append",
        default=[],
        metavar="ID",
        help="a sandbox to follow; repeatable (default: the sandboxes the tokens name)",
    )
    fwd.add_argument(
        "--to",
        action="append",
        type=parse_sink,
        default=[],
        metavar="SINK",
        help="logging | otlp[=URL] | jsonl[=PATH]; repeatable (default: logging)",
    )
    fwd.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="[ID=]TOKEN",
        help=f"access token, per sandbox; repeatable (default: "
        f"${config.ENV_ACCESS_TOKEN})",
    )
    add_follow_options(fwd)
    fwd.add_argument(
        "--state-file",
        metavar="PATH",
        help="resume from and save progress to this file; needs an API key "
        "(default: none, start live or from --since)",
    )
    fwd.add_argument(
        "--prefix",
        default="sandbox",
        help="logger name prefix of forwarded records (sandbox.app.db)",
    )
    fwd.add_argument(
        "--otlp-protocol",
        choices=["http/protobuf", "grpc"],
        help="the OTLP transport (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else "
        "http/protobuf)",
    )
    fwd.add_argument(
        "--otlp-header",
        action="append",
        type=_header,
        default=[],
        metavar="KEY=VALUE",
        help="a header for the OTLP exporters; repeatable (default: "
        "$OTEL_EXPORTER_OTLP_HEADERS)",
    )
    fwd.add_argument(
        "--handoff-size",
        type=_positive_int,
        default=10_000,
        metavar="EVENTS",
        help="events queued between the subscriber and the sinks",
    )
    fwd.add_argument(
        "--checkpoint-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="how often the sinks are flushed and the state file saved",
    )
    fwd.add_argument(
        "--status",
        choices=["auto", "always", "never"],
        default="auto",
        help="the status line on stderr; auto: when stderr is a terminal",
    )
    fwd.add_argument(
        "--status-interval",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between two status line updates",
    )
    fwd.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus /metrics and /healthz on this port, 0 for a free one "
        f"(default: ${config.ENV_FORWARD_METRICS_PORT}, else none)",
    )
    fwd.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port binds",
    )
    fwd.set_defaults(run=cmd_forward)


def _metrics_port(args: argparse.Namespace) -> int | None:
    """``--metrics-port``, else ``CSE_FORWARD_METRICS_PORT``, else None."""
    if args.metrics_port is not None:
        return int(args.metrics_port)
    text = os.environ.get(config.ENV_FORWARD_METRICS_PORT, "").strip()
    if not text:
        return None
    try:
        return _port(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{config.ENV_FORWARD_METRICS_PORT}: {exc}") from None


def _serve_metrics(forwarder: Forwarder, host: str, port: int) -> MetricsServer:
    """Start the /metrics and /healthz server; say where on stderr."""
    try:
        from prometheus_client import CollectorRegistry

        from ..forwarder.metrics import ForwarderCollector, MetricsServer
    except ImportError as exc:
        raise missing_extra(exc, "forward", what="--metrics-port") from None
    registry = CollectorRegistry()
    registry.register(ForwarderCollector(forwarder))
    server = MetricsServer(
        registry, healthy=lambda: forwarder.running, host=host, port=port
    )
    server.start()
    _write_line(
        f"cse-bridge forward: metrics on http://{host}:{server.port}/metrics",
        sys.stderr,
    )
    return server


def build_sinks(
    specs: Sequence[SinkSpec],
    *,
    prefix: str = "sandbox",
    otlp_protocol: str | None = None,
    otlp_headers: dict[str, str] | None = None,
) -> list[Sink]:
    """
    Return the sinks of the ``--to`` values (imports OTLP only when asked).

    Raises:
        MissingExtra: ``--to otlp`` without the ``otlp`` (or ``otlp-grpc``) extra.
        UsageError: A bad OTLP protocol.
    """
    from ..forwarder import JsonlSink, LoggingSink

    sinks: list[Sink] = []
    for spec in specs or [SinkSpec("logging")]:
        if spec.kind == "logging":
            sinks.append(LoggingSink(prefix))
        elif spec.kind == "jsonl":
            sinks.append(JsonlSink(spec.target))
        else:
            try:
                from ..forwarder.otlp import OtlpSink
            except ImportError as exc:
                raise missing_extra(exc, "otlp", what="--to otlp") from None
            try:
                sink = OtlpSink(
                    spec.target, protocol=otlp_protocol, headers=otlp_headers
                )
            except ImportError as exc:  # the gRPC exporter: its own extra
                cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
                raise missing_extra(
                    cause, "otlp-grpc", what="--otlp-protocol grpc"
                ) from None
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            sinks.append(sink)
    return sinks


def _resolve_tokens(
    args: argparse.Namespace,
) -> tuple[list[str], dict[str, str], str | None]:
    """Return (sandboxes, per-sandbox tokens, default token) or raise UsageError."""
    from ..subscriber import sandbox_from_token

    tokens: dict[str, str] = {}
    default_token = config.resolve_access_token(None)
    for text in args.token:
        sandbox, token = _token(text)
        sandbox = sandbox or sandbox_from_token(token)
        if sandbox is None:
            default_token = token
        else:
            tokens[sandbox] = token
    sandboxes = list(args.sandbox)
    if not sandboxes and not tokens and default_token:
        found = sandbox_from_token(default_token)
        sandboxes = [found] if found else []
    if not sandboxes and not tokens:
        raise UsageError("--sandbox ID is required (or a --token that names one)")
    missing = [s for s in sandboxes if s not in tokens and not default_token]
    if missing:
        raise UsageError(
            f"no access token for {', '.join(missing)}: --token ID=TOKEN or "
            f"{config.ENV_ACCESS_TOKEN}"
        )
    return sandboxes, tokens, default_token


def cmd_forward(args: argparse.Namespace) -> int:
    """Run ``cse-bridge forward`` until Ctrl-C or SIGTERM; 0 after a clean stop."""
    try:
        from ..forwarder import Forwarder  # noqa: F401 - fails without the extra
        from ..subscriber import PubSubClient  # noqa: F401 - as does this
    except ImportError as exc:
        raise missing_extra(exc, "redis") from None
    sandboxes, tokens, default_token = _resolve_tokens(args)
    metrics_port = _metrics_port(args)
    api_key = config.resolve_api_key(args.api_key)
    if (args.since is not None or args.state_file) and not api_key:
        raise UsageError(
            f"--since and --state-file need an API key ({config.ENV_API_KEY})"
        )
    # Before the forwarder: reading the state file may already warn.
    with console_logging() as handlers:
        return _follow(
            args,
            handlers,
            sandboxes=sandboxes,
            tokens=tokens,
            default_token=default_token,
            api_key=api_key,
            metrics_port=metrics_port,
        )


def _follow(
    args: argparse.Namespace,
    handlers: list[ConsoleHandler],
    *,
    sandboxes: list[str],
    tokens: dict[str, str],
    default_token: str | None,
    api_key: str | None,
    metrics_port: int | None,
) -> int:
    """Build the sinks and the forwarder from checked arguments; run until stopped."""
    from ..forwarder import Forwarder

    sinks = build_sinks(
        args.to,
        prefix=args.prefix,
        otlp_protocol=args.otlp_protocol,
        otlp_headers=dict(args.otlp_header) or None,
    )
    forwarder = Forwarder(
        sinks,
        sandboxes=sandboxes,
        tokens=tokens,
        access_token=default_token,
        api_key=api_key,
        gateway_url=args.gateway_url,
        host=args.host,
        port=args.port,
        since=args.since,
        state_file=args.state_file,
        handoff_size=args.handoff_size,
        checkpoint_interval=args.checkpoint_interval,
    )
    show = args.status == "always" or (args.status == "auto" and sys.stderr.isatty())
    status = (
        StatusLine(forwarder.stats, sys.stderr, interval=args.status_interval)
        if show
        else None
    )
    for handler in handlers:
        handler.status = status
    metrics = None
    if metrics_port is not None:
        try:
            metrics = _serve_metrics(forwarder, args.metrics_host, metrics_port)
        except OSError as exc:
            _write_line(
                f"cse-bridge forward: cannot serve metrics on "
                f"{args.metrics_host}:{metrics_port}: {exc}",
                sys.stderr,
            )
            return EXIT_ERROR
    try:
        forwarder.start()
        if status is not None:
            status.start()
        threading.Event().wait()  # until Ctrl-C or SIGTERM (both raise here)
    except KeyboardInterrupt:
        pass  # Ctrl-C and SIGTERM end a follow: a clean stop
    finally:
        # stop() delivers what was received, flushes and closes every sink, and
        # saves the state file: SIGTERM loses nothing the sinks were handed.
        forwarder.stop()
        if status is not None:
            status.stop()
        if metrics is not None:
            metrics.stop()
    return EXIT_OK

"""
``cse-bridge forward`` and ``cse-bridge demo``: argument parsing and the run loops.

``cse_bridge.cli`` calls ``add_parsers``; the commands import the subscriber (and, for
``--to otlp``, the OTLP exporters) only when they run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .. import config
from ..cli._args import EXIT_OK, EXIT_USAGE
from ..subscriber._render import parse_since as parse_duration_or_ms
from ._types import Sink

__all__ = ["SinkSpec", "add_parsers", "cmd_forward", "parse_since", "parse_sink"]

LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s [%(sandboxId)s] %(message)s"


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


def parse_since(text: str, *, now: float | None = None) -> int:
    """
    Return the ms timestamp of ``--since``: a duration ago (``10m``) or ms itself.

    Raises:
        argparse.ArgumentTypeError: Neither form.
    """
    now_ms = None if now is None else int(now * 1000)
    try:
        return parse_duration_or_ms(text, now_ms)
    except ValueError as exc:  # the same syntax as ``tail --since``
        raise argparse.ArgumentTypeError(str(exc)) from None


def _token(text: str) -> tuple[str | None, str]:
    sandbox, sep, token = text.partition("=")
    # A JWT is base64url: it has no "=", so "ID=TOKEN" is unambiguous.
    return (sandbox, token) if sep and sandbox and token else (None, text)


def add_parsers(commands: Any) -> None:
    """Add the ``forward`` and ``demo`` subcommands to ``cse-bridge``'s parser."""
    fwd = commands.add_parser(
        "forward",
        help="re-emit sandbox events into local logging, OTLP or JSON lines",
        description=(
            "Follow sandboxes live (history first with --since; resume with "
            "--state-file) and re-emit each event once: as logging records, as OTLP "
            "spans and logs, or as JSON lines. Runs until Ctrl-C or SIGTERM."
        ),
    )
    fwd.add_argument("--sandbox", action="append", default=[], metavar="ID")
    fwd.add_argument(
        "--to",
        action="append",
        type=parse_sink,
        default=[],
        metavar="SINK",
        help="logging | otlp[=URL] | jsonl[=PATH] (repeatable; default logging)",
    )
    fwd.add_argument("--since", type=parse_since, metavar="DURATION|MS")
    fwd.add_argument("--state-file", metavar="PATH", help="resume from / save to")
    fwd.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="[ID=]TOKEN",
        help=f"access token per sandbox (env {config.ENV_ACCESS_TOKEN})",
    )
    fwd.add_argument("--api-key", help=f"for history (env {config.ENV_API_KEY})")
    fwd.add_argument("--gateway-url", metavar="URL")
    fwd.add_argument("--host", help=f"pub/sub host (env {config.ENV_PUBSUB_HOST})")
    fwd.add_argument("--port", type=int, help=f"(env {config.ENV_PUBSUB_PORT})")
    fwd.add_argument("--prefix", default="sandbox", help="logger prefix (sandbox)")
    fwd.add_argument(
        "--otlp-protocol",
        choices=["http/protobuf", "grpc"],
        help="default OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf",
    )
    fwd.add_argument("--otlp-header", action="append", default=[], metavar="KEY=VALUE")
    fwd.add_argument("--handoff-size", type=int, default=10_000, metavar="EVENTS")
    fwd.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the sinks are flushed and the state file saved (1)",
    )
    fwd.add_argument(
        "--status",
        choices=["auto", "always", "never"],
        default="auto",
        help="status line on stderr (auto: when it is a terminal)",
    )
    fwd.add_argument("--status-interval", type=float, default=2.0, metavar="SECONDS")
    fwd.set_defaults(run=cmd_forward)

    demo = commands.add_parser(
        "demo",
        help="see the whole round trip in a few seconds (embedded gateway)",
        description=(
            "Start an embedded gateway, run a small sandbox program that logs "
            "(logging, structlog) and traces (OpenTelemetry) through the bridge, and "
            "forward its stream back into logging on this console."
        ),
    )
    demo.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS")
    demo.set_defaults(run=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(timeout=args.timeout)


def _usage(message: str) -> int:
    sys.stderr.write(f"cse-bridge forward: error: {message}\n")
    return EXIT_USAGE


def build_sinks(
    specs: Sequence[SinkSpec],
    *,
    prefix: str = "sandbox",
    otlp_protocol: str | None = None,
    otlp_headers: dict[str, str] | None = None,
) -> list[Sink]:
    """Return the sinks of the ``--to`` values (imports OTLP only when asked)."""
    from ._jsonl_sink import JsonlSink
    from ._logging_sink import LoggingSink

    sinks: list[Sink] = []
    for spec in specs or [SinkSpec("logging")]:
        if spec.kind == "logging":
            sinks.append(LoggingSink(prefix))
        elif spec.kind == "jsonl":
            sinks.append(JsonlSink(spec.target))
        else:
            try:
                from .otlp import OtlpSink
            except ImportError as exc:
                raise ImportError(
                    "--to otlp needs the OpenTelemetry SDK and OTLP exporter: "
                    "pip install 'cse-bridge[otlp]'"
                ) from exc
            sinks.append(
                OtlpSink(spec.target, protocol=otlp_protocol, headers=otlp_headers)
            )
    return sinks


class _ForwardingLogs(logging.Filter):
    """Gives records without a sandbox an empty ``sandboxId`` for the format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.setdefault("sandboxId", "-")
        return True


def configure_console(stream: Any = None) -> logging.Handler:
    """Log forwarded records (and our warnings) to *stream* (stdout) at DEBUG."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_ForwardingLogs())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("urllib3", "opentelemetry"):  # their debug output is not the stream
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def cmd_forward(args: argparse.Namespace) -> int:
    """Run ``cse-bridge forward`` until Ctrl-C or SIGTERM; return the exit code."""
    from ..subscriber import sandbox_from_token
    from ._core import Forwarder
    from ._status import StatusLine

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
        return _usage("--sandbox ID is required (or a --token that names one)")
    missing = [s for s in sandboxes if s not in tokens and not default_token]
    if missing:
        return _usage(
            f"no access token for {', '.join(missing)}: --token ID=TOKEN or "
            f"{config.ENV_ACCESS_TOKEN}"
        )
    api_key = config.resolve_api_key(args.api_key)
    if (args.since is not None or args.state_file) and not api_key:
        return _usage(
            f"--since and --state-file need an API key ({config.ENV_API_KEY})"
        )
    headers = dict(h.partition("=")[::2] for h in args.otlp_header) or None
    if any(spec.kind == "logging" for spec in args.to) or not args.to:
        configure_console()
    try:
        sinks = build_sinks(
            args.to,
            prefix=args.prefix,
            otlp_protocol=args.otlp_protocol,
            otlp_headers=headers,
        )
    except ImportError as exc:  # a missing extra: one line that names it
        return _usage(str(exc))
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
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    status = None
    show = args.status == "always" or (args.status == "auto" and sys.stderr.isatty())
    try:
        forwarder.start()
        if show:
            status = StatusLine(
                forwarder.stats, sys.stderr, interval=args.status_interval
            ).start()
        done.wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a follow: a clean stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        forwarder.stop()
        if status is not None:
            status.stop()
    return EXIT_OK


def main_forward(argv: Sequence[str]) -> int:  # pragma: no cover - manual runs
    """Run ``forward`` alone (``python -m cse_bridge.forwarder._cli ...``)."""
    parser = argparse.ArgumentParser(prog="cse-bridge")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["forward", *argv])
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_forward(sys.argv[1:]))

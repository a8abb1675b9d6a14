"""
Argument types for ``cse-bridge``'s parsers, the errors commands raise, the exit codes.

Each type helper raises ``argparse.ArgumentTypeError``, which argparse turns into
exit code 2 with the subcommand's usage line.

Exit status, for every command (docs/how-to/gateway.md#exit-status):

- 0: done; a command that runs until stopped (``gateway``, ``tail``, ``forward``)
  also exits 0 when stopped by Ctrl-C (SIGINT) or SIGTERM: that is how it ends.
- 1: an error from the events API, the gateway, the network, or a missing extra.
- 2: bad usage (the subcommand's usage line and the reason on stderr).
- 130 and 143: a command that ends by itself (``send``, ``events``, ``token``,
  ``demo``) was stopped by Ctrl-C or SIGTERM before it finished (128 + the signal).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any, Final

from .. import config

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C before finishing its work (the shell's 128 + SIGINT)."""
EXIT_TERMINATED: Final = 143
"""Stopped by SIGTERM before finishing its work (the shell's 128 + SIGTERM)."""

_OPTIONAL_PACKAGES: Final = {
    "aiohttp": "gateway",
    "jwt": "gateway",
    "redis": "redis",
    "hiredis": "redis",
    "structlog": "structlog",
    "opentelemetry": "otel",
    "google": "otlp",  # protobuf, for the OTLP exporters
    "grpc": "otlp-grpc",
    "prometheus_client": "gateway",  # forward --metrics-port names "forward"
}


class UsageError(Exception):
    """Bad command-line input that argparse could not catch: exit code 2."""


class Terminated(KeyboardInterrupt):
    """
    SIGTERM arrived: raised in the main thread like Ctrl-C's ``KeyboardInterrupt``.

    A subclass, so every ``except KeyboardInterrupt`` that ends a follow cleanly
    handles both signals alike.
    """


class MissingExtra(Exception):
    """
    An optional dependency is not installed: one line naming the extra, exit code 1.

    Args:
        extra: The ``cse-bridge[...]`` extra that provides it.
        module: The module that failed to import.
        what: What needs it, e.g. ``--to otlp``; the command by default.
    """

    def __init__(self, extra: str, module: str, what: str | None = None) -> None:
        super().__init__(extra, module, what)
        self.extra, self.module, self.what = extra, module, what

    def __str__(self) -> str:
        needs = f"{self.what} needs" if self.what else "needs"
        extra = f"{self.extra} extras" if "," in self.extra else f"{self.extra} extra"
        return (
            f"{needs} the {extra} ({self.module} is not installed): "
            f"pip install 'cse-bridge[{self.extra}]'"
        )


def missing_extra(
    exc: ImportError, extra: str | None = None, *, what: str | None = None
) -> MissingExtra:
    """
    Return the ``MissingExtra`` for *exc*, or re-raise *exc* if it is not one.

    An ImportError of our own modules is a bug, never "install an extra": only the
    optional packages count. *extra* overrides the extra the package maps to.
    """
    root = (exc.name or "").partition(".")[0]
    if root not in _OPTIONAL_PACKAGES:
        raise exc
    return MissingExtra(extra or _OPTIONAL_PACKAGES[root], _missing_part(exc), what)


def _missing_part(exc: ImportError) -> str:
    """The package that is missing, or the module if its package is installed."""
    name = exc.name or ""
    root = name.partition(".")[0]
    try:
        installed = importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):  # blocked, or None in sys.modules
        installed = False
    return name if installed else root


def _api_key_pair(text: str) -> tuple[str, int]:
    key, sep, workspace = text.rpartition("=")
    if not sep or not key or not workspace.strip().isdigit():
        raise argparse.ArgumentTypeError(
            f"expected KEY=WORKSPACE (workspace a non-negative integer): {text!r}"
        )
    return key.strip(), _workspace(workspace)


def _workspace(text: str) -> int:
    """A workspace id every store and client can hold: 0 to 2**53 - 1."""
    from ..gateway import MAX_WORKSPACE_ID  # the standard library only

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_WORKSPACE_ID:
        raise argparse.ArgumentTypeError(
            f"workspace out of range 0..{MAX_WORKSPACE_ID}: {text.strip()}"
        )
    return value


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
SINCE_HELP: Final = (
    "only events stored after WHEN: a duration ago (30s, 10m, 2h, 1.5d, 500ms), "
    "milliseconds since the epoch, or an ISO 8601 time (naive means UTC)"
)
"""The one ``--since`` grammar of ``events``, ``tail`` and ``forward``."""


def parse_since(text: str, now_ms: int | None = None) -> int:
    """
    Return the millisecond timestamp of a ``--since`` value.

    ``10m``, ``2h``, ``30s``, ``1.5d``, ``500ms`` count back from *now_ms* (the
    current time by default); digits are milliseconds since the epoch; anything else
    is read as ISO 8601 (``2026-12-06T10:00:00Z``; without a zone, UTC).

    Raises:
        ValueError: None of the three forms, or a time before the epoch.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if match is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0, now - int(float(match.group(1)) * _UNIT_MS[match.group(2)]))
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            "expected a duration (10m, 2h, 30s), milliseconds since the epoch or an "
            f"ISO 8601 time: {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    millis = int(when.timestamp() * 1000)
    if millis < 0:
        raise ValueError(f"before the epoch: {text!r}")
    return millis


def _since(text: str) -> int:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def read_json_object(text: str) -> dict[str, Any]:
    """
    Return the JSON object of ``--data``: literal JSON, ``@PATH`` or ``-`` (stdin).

    Blocks until stdin ends for ``-``.

    Raises:
        UsageError: The file cannot be read, or the text is not a JSON object.
    """
    source = "the value"
    if text == "-":
        source, text = "stdin", sys.stdin.read()
    elif text.startswith("@"):
        path = text[1:]
        source = path
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise UsageError(f"--data: cannot read {path}: {reason}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--data: {source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(
            f"--data: {source} must hold a JSON object, e.g. '{{\"k\": 1}}'"
        )
    return value


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it already says."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, [], argparse.SUPPRESS)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """``cse-bridge``'s parsers: the help formatter above, unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

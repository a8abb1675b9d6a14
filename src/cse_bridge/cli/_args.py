"""
Argument types for ``cse-bridge``'s parsers, ``UsageError`` and the exit codes.

Each type helper raises ``argparse.ArgumentTypeError``, which argparse turns into
exit code 2 with the command's usage line.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any, Final

from .. import config

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C before finishing its work (the shell's 128 + SIGINT)."""


class UsageError(Exception):
    """Bad command-line input that argparse could not catch: exit code 2."""


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

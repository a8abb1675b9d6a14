"""Shared test constants and helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hiredis
import requests

from cse_bridge import config as _config

T = TypeVar("T")

SECRET = "cse-bridge-test-secret-0123456789abcdef"
API_KEY = "test-key-workspace-1"
OTHER_API_KEY = "test-key-workspace-2"
WORKSPACE = 1
OTHER_WORKSPACE = 2
API_KEYS = {API_KEY: WORKSPACE, OTHER_API_KEY: OTHER_WORKSPACE}
CONFIG_ENV = (
    _config.ENV_API_KEY,
    _config.ENV_ACCESS_TOKEN,
    _config.ENV_GATEWAY_URL,
    _config.ENV_PUBSUB_HOST,
    _config.ENV_PUBSUB_PORT,
    _config.ENV_GATEWAY_SECRET,
    _config.ENV_GATEWAY_API_KEYS,
    _config.ENV_GATEWAY_IDLE_TIMEOUT,
    _config.ENV_GATEWAY_MAX_CONNECTIONS,
    _config.ENV_GATEWAY_RATE_LIMIT,
    _config.ENV_GATEWAY_RATE_BURST,
    _config.ENV_GATEWAY_TLS_CERT,
    _config.ENV_GATEWAY_TLS_KEY,
)
"""Every environment variable the client, CLI and gateway read."""


def read_all_events(http_url: str, sandbox: str) -> list[dict[str, Any]]:
    """Every event of *sandbox* (workspace 1), oldest first, paging with ``since``."""
    events: list[dict[str, Any]] = []
    since = 0
    while True:
        answer = requests.get(
            f"{http_url}/events/{sandbox}",
            params={"since": since, "limit": 1000},
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        answer.raise_for_status()
        page = answer.json()["data"]["events"]
        if not page:
            return events
        events.extend(page)
        since = page[-1]["timestamp"]


def raw_subscribe(
    host: str, port: int, sandbox: str, token: str
) -> tuple[socket.socket, hiredis.Reader]:
    """A raw pub/sub subscriber of *sandbox*, past its ``+OK``."""
    sock = socket.create_connection((host, port), timeout=10)
    reader = hiredis.Reader()
    sock.sendall(f"SUBSCRIBE {sandbox} {token}\r\n".encode())
    assert b"OK" == next_reply(sock, reader)
    return sock, reader


def next_reply(sock: socket.socket, reader: hiredis.Reader) -> Any:
    """The next RESP reply, or None once the server closed the connection."""
    while (reply := reader.gets()) is False:
        data = sock.recv(65536)
        if not data:
            return None
        reader.feed(data)
    return reply


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run examples/*name* without COMPUTESDK_* or OTEL_* but *env*; check exit 0."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPUTESDK_", "OTEL_"))
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=45,
        env={**clean, **env},
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    return result


def wait_until(
    check: Callable[[], T], what: str, *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """
    Poll *check* until it returns something truthy; return that; fail after *timeout*.

    For states no event announces (a scraped counter, a probe's answer): the wait is
    bounded and the failure says what was awaited and what was last seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {result!r})")
        time.sleep(interval)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    ``GET url`` (a ``/metrics`` page) parsed by prometheus-client's text parser.

    Returns:
        ``{(sample name, frozenset of label pairs): value}``.
    """
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(url, timeout=10)
    answer.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    default: float | None = None,
    **labels: str,
) -> float:
    """The value of one sample of *samples*; fails if absent, unless a *default*."""
    value = samples.get((name, frozenset(labels.items())), default)
    if value is None:
        names = sorted({n for n, _ in samples})
        raise AssertionError(f"no sample {name}{labels}; the page has {names}")
    return value

"""Shared test constants and helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hiredis
import requests

from cse_bridge import config as _config

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
)
"""Every environment variable the client, CLI and gateway read."""


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """
    Poll *check* until it is true or *timeout* seconds passed; return its last value.

    For what no event announces (a file that goes away, another process's effect).
    """
    end = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() >= end:
            return check()
        pause.wait(step)
    return True


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

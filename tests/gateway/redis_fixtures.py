"""Redis for the redis store's tests: a unique key prefix per test, a private server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/0"
"""The shared Redis CI guarantees; never flushed, only our prefixes are deleted."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on a fresh event loop."""
    return asyncio.run(coro)


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under *prefix*."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@contextlib.contextmanager
def unique_redis_url() -> Iterator[str]:
    """A store URL on the shared Redis under a fresh prefix, deleted afterwards."""
    prefix = f"cse-test-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        drop_prefix(REDIS_URL, prefix)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A private redis-server (AOF, fsync always) that tests may stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it; return once it logged that it accepts connections."""
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before it was ready")

    def stop(self) -> None:
        """Shut it down (SIGTERM: the AOF is complete) and wait for it."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=10)
            self.proc = None

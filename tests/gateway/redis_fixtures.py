"""
Redis for the redis store's tests: a unique key prefix per test, a private server.

The shared Redis is ``REDIS_URL`` when it is set (CI points it at the machine's own
server); otherwise the first test that needs it starts a throwaway ``redis-server`` on
a free port, stopped when the test process exits. Without either, those tests fail
with a message that says what to install or set: a missing Redis is never a skip.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

T = TypeVar("T")

NO_REDIS = (
    "the Redis tests need a redis-server binary on PATH (e.g. apt-get install "
    "redis-server; the suite starts its own on a free port) or REDIS_URL=redis://"
    "host:port/db naming a Redis they may write cse-test-* keys to"
)


@functools.cache
def shared_redis_url() -> str:
    """
    The Redis every store test shares: ``REDIS_URL``, else a throwaway server.

    Tests never flush it; each works under its own key prefix and deletes it.
    """
    configured = os.environ.get("REDIS_URL")
    if configured:
        return configured
    if shutil.which("redis-server") is None:
        raise RuntimeError(NO_REDIS)
    directory = Path(tempfile.mkdtemp(prefix="cse-test-redis-"))
    server = OwnRedis(directory, persistent=False)
    server.start()
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    atexit.register(server.stop)
    return server.url


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
    base = shared_redis_url()
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        drop_prefix(base, prefix)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """
    A private redis-server that tests may stop and restart.

    With ``persistent`` (the default) it keeps an append-only file fsynced on every
    write, so a restart loses nothing acknowledged; without, it keeps nothing on disk.
    """

    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it; return once it answers PING (at most *timeout* seconds)."""
        durability = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *durability,
                "--dir",
                str(self.directory),
                # A file, not a pipe nobody drains once the server is up.
                "--logfile",
                str(self.directory / "redis.log"),
            ],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis(port=self.port, socket_timeout=1)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            time.sleep(0.02)
        self.stop()
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")

    def stop(self) -> None:
        """Shut it down (SIGTERM: the AOF is complete) and wait for it."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=10)
            self.proc = None

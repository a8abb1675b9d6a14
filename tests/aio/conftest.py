"""
Helpers for the asyncio clients' tests: a bounded ``asyncio.run``, and counters of
what a test may leave behind (tasks, sockets).

Plain ``asyncio.run`` inside each test, no pytest plugin: every test gets a fresh
loop that is closed at its end, a hang is bounded by ``run``'s timeout (and by
pytest-timeout), and a socket or task the code leaks shows up as a
``ResourceWarning`` or a "Task was destroyed" error, which the suite turns into
failures.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

WAIT = 10.0
"""Seconds to wait for something that must happen."""

FAST: dict[str, Any] = {
    "reconnect_delay": 0.05,
    "max_reconnect_delay": 0.2,
    "connect_timeout": 5.0,
}
"""Small delays so reconnect tests stay quick."""


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """
    Run *coro* on a new event loop, failing after *timeout* seconds.

    *coro* runs as the loop's main task itself (``wait_for`` would wrap it in a
    second task), so ``other_tasks()`` inside it sees only what the code started.
    """
    expired = False

    async def main() -> T:
        nonlocal expired
        task = asyncio.current_task()
        assert task is not None

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await coro
        finally:
            timer.cancel()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError(f"the test did not finish within {timeout} s") from None
        raise


def connections_to(port: int) -> int:
    """
    How many TCP sockets this process has open to *port* on the other end (Linux).

    The servers of these tests run in this process too; counting by the remote
    port leaves out their ends of the connections, which close on their own time.
    """
    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count


def other_tasks() -> set[asyncio.Task[Any]]:
    """The loop's tasks but the running one (the test's own)."""
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Wait (yielding to the loop) until *check()* is true; False after *timeout*."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def take(stream: Any, count: int) -> list[Any]:
    """The first *count* items of an async iterator (which is then left open)."""
    out: list[Any] = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out

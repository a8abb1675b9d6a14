"""
``InMemorySink``: keeps what the worker delivers, optionally scripted to fail, for
tests (``cse_bridge.testing`` re-exports it). It answers through ``account`` exactly
as ``EventsSink`` would for the same HTTP outcomes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeAlias

from ._exporter import account
from ._transport import Outcome, Response
from ._types import EncodedEvent, SendResult

__all__ = ["InMemorySink", "ScriptStep"]

_STORED = b'{"success":true,"data":{"eventId":"evt_memory"}}'


ScriptStep: TypeAlias = "int | Literal['down', 'hang'] | None"
"""
One scripted answer of ``InMemorySink`` to a whole ``send``: None accepts, an int is
the HTTP status every event gets, ``"down"`` is a refused connection, ``"hang"`` blocks
until the deadline (or ``release()``) and then times out.
"""


class InMemorySink:
    """
    Keeps every event it accepts, in order; optionally scripted to fail.

    Thread-safe to read while the worker sends. ``events`` are ``EncodedEvent``;
    ``decoded()`` gives their JSON.

    Args:
        script: Answers for the first ``send`` calls, in order (see ``ScriptStep``).
        reject: Events for which it returns True are answered 400.
        retry_after: The ``Retry-After`` value sent with scripted 429/503 answers.
    """

    def __init__(
        self,
        script: Iterable[ScriptStep] = (),
        *,
        reject: Callable[[EncodedEvent], bool] | None = None,
        retry_after: str | None = None,
    ) -> None:
        self.events: list[EncodedEvent] = []
        self.calls = 0
        self.closed = False
        self.close_timeout: float | None = None
        self._script: deque[ScriptStep] = deque(script)
        self._reject = reject
        self._retry_after = retry_after
        self._released = threading.Event()
        # Wakes tests waiting for a number of events; guards events and calls.
        self._changed = threading.Condition()

    def send(self, batch: Sequence[EncodedEvent], deadline: float) -> SendResult:
        """Accept, reject or fail *batch* as scripted; never raises."""
        with self._changed:
            self.calls += 1
            step = self._script.popleft() if self._script else None
            self._changed.notify_all()
        outcomes: list[Outcome]
        if step == "hang":
            self._released.wait(max(0.0, min(deadline - time.monotonic(), 30.0)))
            outcomes = [TimeoutError("hung")] * len(batch)
        elif step == "down":
            outcomes = [ConnectionRefusedError("down")] * len(batch)
        elif isinstance(step, int):
            outcomes = [Response(step, self._retry_after, b"scripted")] * len(batch)
        else:
            outcomes = [
                Response(400, None, b"rejected")
                if self._reject is not None and self._reject(event)
                else Response(200, None, _STORED)
                for event in batch
            ]
        result = account(batch, outcomes)
        accepted = [
            event
            for event, outcome in zip(batch, outcomes, strict=True)
            if isinstance(outcome, Response) and outcome.status == 200  # noqa: PLR2004
        ]
        with self._changed:
            self.events.extend(accepted)
            self._changed.notify_all()
        return result

    def release(self) -> None:
        """Let every ``"hang"`` step (now and later) return at once."""
        self._released.set()

    def close(self, timeout: float) -> None:
        """Record the close and its *timeout*; releases hung sends."""
        self.closed = True
        self.close_timeout = timeout
        self._released.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least *count* events arrived, at most *timeout* seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.events) >= count, timeout)

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``send`` was called at least *count* times, at most *timeout*."""
        with self._changed:
            return self._changed.wait_for(lambda: self.calls >= count, timeout)

    def decoded(self) -> list[dict[str, Any]]:
        """Return every accepted body as parsed JSON, in arrival order."""
        with self._changed:
            events = list(self.events)
        return [json.loads(event.body) for event in events]

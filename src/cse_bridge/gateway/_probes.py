"""
``Probes``: ``GET /healthz`` and ``GET /readyz``, for load balancers and Kubernetes.

``/healthz`` says the process serves HTTP (a liveness probe: restart it if this
fails). ``/readyz`` says it should get traffic: not draining, both ports accepting,
and the store answering a read. Neither needs credentials, and both are cheap enough
for a probe every second: the store read is one small query, and concurrent probes
share it. See docs/how-to/operate.md#operate-probes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Final

from aiohttp import web

from ._drain import Drain
from .stores import EventStore, SandboxKey

__all__ = ["Probes"]

_PROBE_KEY: Final[SandboxKey] = (0, "")
"""A sandbox no token can name (ids are never empty): reading it finds nothing."""
_STORE_TIMEOUT: Final = 2.0
"""Seconds the store may take to answer a readiness read before it counts as down."""


def _answer(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class Probes:
    """
    The two probe handlers of one gateway.

    Args:
        store: Read once per readiness check (through no metrics: probes would
            swamp the store latency histogram).
        drain: Readiness fails as soon as it drains.
        http_serving: True while the HTTP port accepts connections.
        pubsub_serving: True while the pub/sub port does.
    """

    def __init__(
        self,
        store: EventStore,
        drain: Drain,
        *,
        http_serving: Callable[[], bool],
        pubsub_serving: Callable[[], bool],
    ) -> None:
        self._store = store
        self._drain = drain
        self._http_serving = http_serving
        self._pubsub_serving = pubsub_serving
        self._check: asyncio.Future[None] | None = None

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        """``GET /healthz``: 200 while the process answers HTTP, draining or not."""
        return _answer(200, {"status": "ok", "draining": self._drain.draining})

    async def readyz(self, request: web.BaseRequest) -> web.Response:
        """``GET /readyz``: 200 when this gateway should get traffic, else 503."""
        checks: dict[str, object] = {
            "draining": self._drain.draining,
            "http": self._http_serving(),
            "pubsub": self._pubsub_serving(),
        }
        ready = checks["http"] is True and checks["pubsub"] is True
        if self._drain.draining:
            ready = False
            checks["store"] = "not checked (draining)"
        else:
            store = await self._store_answers()
            checks["store"] = store
            ready = ready and store == "ok"
        checks["status"] = "ready" if ready else "unavailable"
        return _answer(200 if ready else 503, checks)

    async def _store_answers(self) -> str:
        """``ok``, or why the store did not answer a read within the timeout."""
        check = self._check
        if check is None or check.done():
            # One read at a time, shared by the probes that arrive meanwhile.
            check = self._check = asyncio.ensure_future(self._read())
            # Retrieved here too: a read every probe gave up on must not be
            # reported as "exception never retrieved".
            check.add_done_callback(_retrieve)
        try:
            # shield: a probe that times out or goes away leaves the read running
            # for the others (a new one starts only once it ended).
            await asyncio.wait_for(asyncio.shield(check), _STORE_TIMEOUT)
        except asyncio.TimeoutError:
            return f"no answer within {_STORE_TIMEOUT:g} s"
        except Exception as exc:  # any failure of the store means "not ready"
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    async def _read(self) -> None:
        await self._store.query(_PROBE_KEY, event_type=None, since=None, limit=1)

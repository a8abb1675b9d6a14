"""A small fault-injecting HTTP proxy in front of the real gateway, for engine tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType

import aiohttp
from aiohttp import web

Fault = tuple[int, dict[str, str]]
"""An injected answer: status and headers."""

Rule = Callable[[int, bytes], Fault | None]
"""Called with the request's number (from 0) and body: a fault to answer, or None."""


class FaultProxy:
    """
    Forwards ``POST /events`` to *upstream* unless *rule* injects an answer.

    Runs its own loop in a daemon thread; ``requests`` counts what it received.
    """

    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream = upstream
        self.rule = rule
        self.requests = 0
        self.injected = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._run, name="cse-bridge-test-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:

            async def forward(request: web.Request) -> web.StreamResponse:
                body = await request.read()
                number = self.requests
                self.requests += 1
                fault = self.rule(number, body)
                if fault is not None:
                    self.injected += 1
                    status, headers = fault
                    return web.Response(status=status, text="injected", headers=headers)
                async with session.post(
                    self.upstream + "/events",
                    data=body,
                    headers={
                        "Authorization": request.headers.get("Authorization", ""),
                        "Content-Type": "application/json",
                    },
                ) as answer:
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        content_type="application/json",
                    )

            app = web.Application(client_max_size=4 * 1024 * 1024)
            app.router.add_post("/events", forward)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await self._stop.wait()
            await runner.cleanup()

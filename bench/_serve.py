"""
Serve one benchmark target in this process and print its address as a JSON line.

``python bench/_serve.py bare`` runs a bare aiohttp handler that answers POST /events
with a constant envelope (the baseline); ``python bench/_serve.py gateway STORE_URL``
runs the real gateway on that store. Both bind 127.0.0.1 on a free port and run until
killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

SECRET = "bench-secret-0123456789abcdef0123456789"
ENVELOPE = (
    '{"success":true,"data":{"eventId":"evt_0","sandboxId":"sb","type":"bench.event",'
    '"timestamp":1732780000123}}'
)


async def _bare_handler(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text=ENVELOPE, content_type="application/json")


async def serve_bare() -> None:
    """Run the constant-envelope handler forever."""
    app = web.Application()
    app.router.add_post("/events", _bare_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"http": f"http://127.0.0.1:{port}", "token": "x"}), flush=True)
    await asyncio.Event().wait()


async def serve_gateway(store_url: str) -> None:
    """Run the real gateway on *store_url* forever."""
    from cse_bridge.gateway import Gateway, GatewayConfig

    gateway = Gateway(
        GatewayConfig(http_port=0, pubsub_port=0, store_url=store_url, secret=SECRET)
    )
    await gateway.start()
    token = gateway.auth.issue_token("bench-sandbox", 1, ttl=None)
    print(json.dumps({"http": gateway.http_url, "token": token}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1] == "bare":
        asyncio.run(serve_bare())
    else:
        asyncio.run(serve_gateway(sys.argv[2]))

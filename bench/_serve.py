"""
Serve one benchmark target in this process and print its address as a JSON line.

``python bench/_serve.py bare`` runs a bare aiohttp handler that answers POST /events
with a constant envelope (the baseline), in a ``web.Application`` as aiohttp servers
usually are; ``bare-lowlevel`` runs the same handler on aiohttp's low-level
``web.Server``, as the gateway does, without the application's router and handler
chain (the floor); ``python bench/_serve.py gateway STORE_URL`` runs the real gateway
on that store. Each binds 127.0.0.1 (a free port unless ``--port``) and runs until
killed.

``--reuse-port`` sets SO_REUSEPORT, so that a second process started with ``--port`` of
the first shares its port (the kernel spreads connections over both). ``--fill N``
stores N events into the benchmark sandbox before announcing, every 100th of type
``bench.rare`` and the others ``bench.event``, for the GET benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket

from aiohttp import web

SECRET = "bench-secret-0123456789abcdef0123456789"
API_KEY = "bench-key"
SANDBOX = "bench-sandbox"
ENVELOPE = (
    '{"success":true,"data":{"eventId":"evt_0","sandboxId":"sb","type":"bench.event",'
    '"timestamp":1732780000123}}'
)
DATA = '{"i":1,"message":"hello from the benchmark","ok":true}'


async def _bare_handler(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(text=ENVELOPE, content_type="application/json")


async def serve_bare(port: int, reuse_port: bool, *, lowlevel: bool = False) -> None:
    """Run the constant-envelope handler forever."""
    runner: web.BaseRunner
    if lowlevel:
        runner = web.ServerRunner(web.Server(_bare_handler, access_log=None))
    else:
        app = web.Application()
        app.router.add_post("/events", _bare_handler)
        runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port or None)
    await site.start()
    sock: socket.socket = site._server.sockets[0]  # type: ignore[union-attr]
    port = sock.getsockname()[1]
    print(json.dumps({"http": f"http://127.0.0.1:{port}", "token": "x"}), flush=True)
    await asyncio.Event().wait()


async def fill(gateway: object, count: int) -> None:
    """Store *count* events into the benchmark sandbox, 1% of them ``bench.rare``."""
    store = gateway.store  # type: ignore[attr-defined]
    key = (1, SANDBOX)
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(
                store.append(key, "bench.rare" if i % 100 == 0 else "bench.event", DATA)
                for i in range(start, min(start + 1000, count))
            )
        )


async def serve_gateway(
    store_url: str, port: int, reuse_port: bool, fill_count: int
) -> None:
    """Run the real gateway on *store_url* forever."""
    from cse_bridge.gateway import Gateway, GatewayConfig

    gateway = Gateway(
        GatewayConfig(
            http_port=port,
            pubsub_port=0,
            store_url=store_url,
            secret=SECRET,
            api_keys={API_KEY: 1},
            reuse_port=reuse_port,
        )
    )
    await gateway.start()
    if fill_count:
        await fill(gateway, fill_count)
    token = gateway.auth.issue_token(SANDBOX, 1, ttl=None)
    print(
        json.dumps({"http": gateway.http_url, "token": token, "api_key": API_KEY}),
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["bare", "bare-lowlevel", "gateway"])
    parser.add_argument("store", nargs="?", default="memory://")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--fill", type=int, default=0)
    opts = parser.parse_args()
    if opts.target.startswith("bare"):
        lowlevel = opts.target == "bare-lowlevel"
        asyncio.run(serve_bare(opts.port, opts.reuse_port, lowlevel=lowlevel))
    else:
        asyncio.run(serve_gateway(opts.store, opts.port, opts.reuse_port, opts.fill))

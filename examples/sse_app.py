"""
Stream a sandbox's events to a browser as Server-Sent Events (Starlette, asyncio).

    pip install 'cse-bridge[aio]' starlette uvicorn
    COMPUTESDK_ACCESS_TOKEN=... COMPUTESDK_API_KEY=... uvicorn sse_app:app

``GET /sandboxes/{sandbox_id}/events`` answers ``text/event-stream``: one SSE event per
sandbox event (``event:`` its type, ``data:`` its JSON, ``id:`` its timestamp). A
browser's ``EventSource`` reconnects by itself and sends the last ``id`` it saw as
``Last-Event-ID``; the stream then resumes strictly after it, backfilled from the
gateway with the API key, so the page misses nothing and repeats nothing. When the
browser goes away, Starlette cancels the response and the pub/sub connection closes.

The access token of each sandbox comes from ``tokens(sandbox_id)``: here, the one
``COMPUTESDK_ACCESS_TOKEN`` of the environment (your application knows the tokens of
the sandboxes it created).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cse_bridge import SandboxEvent
from cse_bridge.aio import AsyncPubSubClient


def sse(event: SandboxEvent) -> str:
    """One Server-Sent Event: type, timestamp as id, the event's JSON as data."""
    data = json.dumps(event.to_json(), separators=(",", ":"))
    return f"id: {event.timestamp}\nevent: {event.type}\ndata: {data}\n\n"


def create_app(
    tokens: Callable[[str], str | None] = lambda _: os.environ.get(
        "COMPUTESDK_ACCESS_TOKEN"
    ),
    **client_options: object,
) -> Starlette:
    """
    Build the app; *client_options* go to every ``AsyncPubSubClient`` (host, port,
    api_key, gateway_url...), which otherwise reads ``COMPUTESDK_*``.
    """

    async def events(request: Request) -> Response:
        sandbox_id = request.path_params["sandbox_id"]
        token = tokens(sandbox_id)
        if token is None:
            return Response("unknown sandbox\n", status_code=404)
        last_seen = request.headers.get("last-event-id", "")
        client = AsyncPubSubClient(
            sandbox_id=sandbox_id,
            access_token=token,
            since=int(last_seen) if last_seen.isdigit() else None,
            **client_options,  # type: ignore[arg-type]
        )
        await client.connect()  # a refused token answers 500 here, not mid-stream

        async def body() -> AsyncIterator[str]:
            yield ": connected\n\n"  # a comment: the browser's open event
            async for event in client.stream():
                yield sse(event)

        # However the response ends (the browser leaves and Starlette cancels the
        # body, or the stream ends), the background task runs after it: the
        # pub/sub connection is closed, its task and socket gone.
        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(client.disconnect),
        )

    return Starlette(routes=[Route("/sandboxes/{sandbox_id}/events", events)])


app = create_app()

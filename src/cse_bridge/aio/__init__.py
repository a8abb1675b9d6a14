"""
asyncio clients (docs/how-to/asyncio.md): ``AsyncEventsClient`` and
``AsyncPubSubClient``, the awaitable twins of ``EventsClient`` and ``PubSubClient``.

Needs the ``aio`` extra (aiohttp, and hiredis for the RESP parsing):
``pip install 'cse-bridge[aio]'``. ``import cse_bridge`` never imports this package.
"""

from __future__ import annotations

from ._http import AsyncEventsClient
from ._pubsub import AsyncPubSubClient

__all__ = ["AsyncEventsClient", "AsyncPubSubClient"]

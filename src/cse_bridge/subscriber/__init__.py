"""
The real-time subscriber (docs/protocol.md#protocol-pubsub): ``PubSubClient``.

Needs hiredis, which parses the RESP (the ``redis`` extra).
``import cse_bridge`` never imports this package.
"""

from __future__ import annotations

from ._client import PubSubClient, PubSubState, create_pubsub_client
from ._options import sandbox_from_token
from ._resp import MAX_UNPARSED_BYTES

__all__ = [
    "MAX_UNPARSED_BYTES",
    "PubSubClient",
    "PubSubState",
    "create_pubsub_client",
    "sandbox_from_token",
]

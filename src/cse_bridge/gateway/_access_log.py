"""
``AccessLog``: one JSON line per HTTP request, off unless asked for.

The line goes to the ``cse_bridge.gateway.access`` logger at INFO, so the application
(or ``cse-bridge gateway --access-log``) decides where it is written. It names the
request and its answer, never a credential: no header, no body.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from aiohttp import web

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER: Final = "cse_bridge.gateway.access"
"""The logger the lines go to."""


class AccessLog:
    """
    Formats and logs one line per answered request.

    Args:
        logger: Where lines go; ``cse_bridge.gateway.access`` by default.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def record(
        self,
        request: web.BaseRequest,
        status: int,
        size: int | None,
        duration: float,
    ) -> None:
        """Log the line for *request*, answered with *status* in *duration* seconds."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        line = {
            "time": round(time.time(), 3),
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "status": status,
            "bytes": size,
            "duration_ms": round(duration * 1000, 3),
            "user_agent": request.headers.get("User-Agent"),
        }
        self.logger.info(json.dumps(line, separators=(",", ":")))

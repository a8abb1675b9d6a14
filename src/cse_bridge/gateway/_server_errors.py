"""
aiohttp's server logger for one gateway: a malformed request is a counted refusal.

aiohttp answers a request it cannot parse (a 9 KB header line, a bad method, broken
chunking) with a 400 itself, before any handler sees it, and logs each one as an
ERROR with a traceback: anyone who can reach the port could fill the log. Here such
a request is counted in ``Rejections`` (``size`` for an over-long line, ``invalid``
otherwise) and said at most once per cause per interval (``LogThrottle``). Every
other error (a bug of ours) still goes to ``aiohttp.server`` with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from ._log_throttle import LogThrottle
from ._rejections import Cause, Rejections

__all__ = ["ServerErrorLog"]


class ServerErrorLog(logging.Logger):
    """The ``logger=`` of the gateway's aiohttp ``RequestHandler``s."""

    def __init__(self, rejections: Rejections, log: LogThrottle) -> None:
        super().__init__("aiohttp.server")
        self._rejections = rejections
        self._throttle = log
        self._server = logging.getLogger("aiohttp.server")

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """aiohttp logs a bad method on a first request at DEBUG: count it."""
        if not self._refused(kwargs.get("exc_info")):
            self._server.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """A malformed request is counted and throttled; anything else is logged."""
        if not self._refused(kwargs.get("exc_info")):
            kwargs.setdefault("exc_info", True)
            self._server.error(msg, *args, **kwargs)

    def _refused(self, exc: object) -> bool:
        if not isinstance(exc, HttpProcessingError):
            return False
        cause: Cause = "size" if isinstance(exc, LineTooLong) else "invalid"
        self._rejections.add("http", cause)
        self._throttle.report(
            f"http:malformed:{cause}",
            "answered 400 to malformed HTTP requests (%s): %s",
            type(exc).__name__,
            str(exc.message)[:120],
        )
        return True

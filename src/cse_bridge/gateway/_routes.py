"""
``Routes``: the gateway's router, the handler of aiohttp's low-level ``web.Server``.

The gateway serves five routes: four fixed paths and ``/events/{sandboxId}``. A dict
lookup resolves them. ``web.Application`` would resolve them too, but its router, its
match info and its handler chain cost a POST about a fifth of the time a bare handler
takes (``bench/gateway.py``), and the gateway is benchmarked against that bare handler.

Every route is observed (``RequestObserver.wrap``), and so are the refusals: aiohttp's
404, or 405 naming the methods the path allows, in the error envelope. A route's
``Expect: 100-continue`` gets its interim answer before the handler reads the body, as
``web.Application`` sends it; any other expectation answers 417.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from ._observer import Handler, RequestObserver

__all__ = ["Routes", "tail_segment"]

_UNMATCHED: Final = "unmatched"
"""The ``route`` label of the refusals: a 404, 405 or 417."""
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def tail_segment(request: web.BaseRequest, prefix: str) -> str | None:
    """
    The one path segment after *prefix* (which ends with ``/``), decoded; else None.

    Matched on the path as sent, then percent-decoded: an encoded slash (``%2F``) is
    part of the segment, as in aiohttp's ``{name}``, not a separator.
    """
    path = request.rel_url.raw_path
    if not path.startswith(prefix):
        return None
    segment = path[len(prefix) :]
    if not segment or "/" in segment:
        return None
    return unquote(segment) if "%" in segment else segment


class Routes:
    """
    Fixed paths, and paths of one segment under a prefix, each with its methods.

    Add every route before serving; GET routes answer HEAD too.
    """

    def __init__(self, observer: RequestObserver) -> None:
        self._observer = observer
        self._paths: dict[str, dict[str, Handler]] = {}
        self._prefixes: dict[str, dict[str, Handler]] = {}
        self._unmatched = observer.wrap(self._refuse, _UNMATCHED)

    def add(self, method: str, path: str, handler: Handler) -> None:
        """
        Serve *method* on *path* with *handler*, observed.

        A *path* ending in ``/{name}`` takes any one segment there; the handler reads
        it with ``tail_segment``. The path is the ``route`` label in /metrics.
        """
        prefix, brace, _ = path.rpartition("/{")
        if "{" in prefix or (brace and not path.endswith("}")):
            raise ValueError(f"only the last segment may be a {{name}}: {path}")
        table = self._prefixes if brace else self._paths
        methods = table.setdefault(prefix + "/" if brace else path, {})
        observed = self._observer.wrap(handler, path)
        if method == hdrs.METH_GET:
            methods[hdrs.METH_HEAD] = observed
        methods[method] = observed

    def _methods(self, request: web.BaseRequest) -> Mapping[str, Handler] | None:
        methods = self._paths.get(request.rel_url.path)
        if methods is not None:
            return methods
        for prefix, methods in self._prefixes.items():
            if tail_segment(request, prefix) is not None:
                return methods
        return None

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer *request* with its route's handler, or the observed refusal."""
        methods = self._methods(request)
        handler = None if methods is None else methods.get(request.method)
        expect = request.headers.get(hdrs.EXPECT)
        if handler is None or (expect and not await self._continue(request, expect)):
            handler = self._unmatched
        return await handler(request)

    async def _continue(self, request: web.BaseRequest, expect: str) -> bool:
        """Send ``100 Continue`` if asked; False for an expectation we cannot meet."""
        if request.version != HttpVersion11:
            return True  # HTTP/1.0 has no interim answers: the header is ignored
        if expect.lower() != "100-continue":
            return False
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # the answer's own size counts from here
        return True

    async def _refuse(self, request: web.BaseRequest) -> web.StreamResponse:
        """Raise the answer of a request no route takes: 404, 405 or 417."""
        methods = self._methods(request)
        if methods is None:
            raise web.HTTPNotFound()
        if request.method not in methods:
            raise web.HTTPMethodNotAllowed(request.method, methods.keys())
        raise web.HTTPExpectationFailed()  # described by the error envelope

"""
The engine's sender when a proxy applies: ``requests``, one POST at a time.

``EventsSink`` picks it when ``HTTPS_PROXY`` and friends name a proxy for the gateway
(``proxy_for``); otherwise the faster ``_transport.AsyncTransport`` sends.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import urllib.request
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from ._http11 import Response
from ._transport import ABANDONED, Outcome, StopRule

__all__ = ["ProxiedTransport", "proxy_for"]


def proxy_for(url: str) -> str | None:
    """Return the proxy URL that applies to *url* from the environment, if any."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _tls_error(exc: Exception) -> ssl.SSLError | None:
    """requests wraps TLS failures; unwrap them so the retry rules see TLS."""
    import requests

    if not isinstance(exc, requests.exceptions.SSLError):
        return None
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ssl.SSLCertVerificationError(text)
    return ssl.SSLError(text)


class ProxiedTransport:
    """
    POSTs through ``requests`` one at a time: the fallback when a proxy applies.

    Slower (about 1.7k requests/s here) but it speaks every proxy requests speaks.
    Use from one thread at a time.
    """

    def __init__(self, url: str, *, ca_file: str | None = None) -> None:
        import requests

        self.url = url.rstrip("/") + "/events"
        self._verify: str | bool = ca_file or True
        self._session = requests.Session()

    def post_many(
        self,
        bodies: Sequence[bytes] | Iterator[bytes],
        headers: bytes,
        deadline: float,
        stop: StopRule,
    ) -> list[Outcome]:
        """POST each body in turn; blocks until done, stopped or past *deadline*."""
        fields = dict(
            line.split(": ", 1)
            for line in headers.decode("latin-1").split("\r\n")
            if ": " in line
        )
        total = len(bodies) if isinstance(bodies, Sequence) else None
        outcomes: list[Outcome] = []
        for index, body in enumerate(bodies):
            left = deadline - time.monotonic()
            if left <= 0:
                outcomes.append(TimeoutError("send deadline passed"))
                if total is None:
                    break  # a lazy source: leave the rest untaken
                continue
            result: Response | BaseException
            try:
                answer = self._session.post(
                    self.url,
                    data=body,
                    headers=fields,
                    timeout=left,
                    verify=self._verify,
                )
                result = Response(
                    answer.status_code,
                    answer.headers.get("Retry-After"),
                    answer.content,
                )
            except Exception as exc:  # every requests failure is one outcome
                result = _tls_error(exc) or exc
            outcomes.append(result)
            if stop(index, result):
                break
        if total is not None:
            outcomes.extend([None] * (total - len(outcomes)))
        return outcomes

    def close(self) -> None:
        """Close the session's connections."""
        with contextlib.suppress(Exception):
            self._session.close()

    def forget(self) -> None:
        """Drop the session without closing its (inherited) connections."""
        ABANDONED.append(self._session)
        import requests

        self._session = requests.Session()

"""
The exporter: ``EventsSink`` turns the worker's batches into ``POST /events`` requests
on a transport, and their answers into a ``SendResult`` (``account``, by the rules of
``_retry``). ``InMemorySink`` (in ``_memory_sink``) answers the same way, for tests.

Only the engine's worker calls ``send``, so an exporter's connections need no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Final

from .. import config
from ._options import (
    DEFAULT_CONNECTIONS,
    ENV_CONNECTIONS,
    resolve_ca_file,
    resolve_int,
)
from ._proxied import ProxiedTransport, proxy_for
from ._retry import FEW_RETRIES, Disposition, classify_status, parse_retry_after
from ._transport import AsyncTransport, Outcome, Response, Transport
from ._types import EncodedEvent, SendResult

__all__ = ["EventsSink", "account"]


_USER_AGENT: Final = "cse-bridge-engine"
_ERROR_TEXT: Final = 300


_GATEWAY_ANSWER: Final = b'"eventId"'
"""Every stored event's answer names its id (docs/protocol.md#protocol-store-event)."""


def account(
    batch: Sequence[EncodedEvent],
    outcomes: Sequence[Outcome],
    *,
    gateway: str = "the gateway",
) -> SendResult:
    """
    Turn per-event outcomes into a ``SendResult`` by the retry rules of ``_retry``.

    Pure; every event lands in exactly one of sent, dropped or retry. *gateway* (its
    base URL) names it in the sentence of a permanent error.
    """
    sent = 0
    dropped: dict[str, int] = {}
    drop_errors: dict[str, str] = {}
    dropped_events: list[EncodedEvent] = []
    retry: list[EncodedEvent] = []
    retry_after: float | None = None
    error: str | None = None
    auth_failed = False
    permanent: str | None = None
    for event, outcome in zip(batch, outcomes, strict=True):
        if outcome is None:  # never attempted: no attempt to count
            retry.append(event)
            continue
        if isinstance(outcome, Response):
            disposition = classify_status(outcome.status)
            if disposition is Disposition.SENT:
                if _GATEWAY_ANSWER in outcome.body:
                    sent += 1
                    continue
                disposition = Disposition.PERMANENT
                permanent = (
                    f"{gateway} answered {outcome.status} without an event id: it "
                    "is not an events gateway; check COMPUTESDK_GATEWAY_URL"
                )
            elif disposition is Disposition.PERMANENT:
                permanent = (
                    f"{gateway}/events answered {outcome.status}: the URL is not an "
                    "events gateway's base URL; check COMPUTESDK_GATEWAY_URL"
                )
            body = outcome.body[:_ERROR_TEXT].decode("utf-8", "replace")
            error = f"HTTP {outcome.status}: {body}".rstrip()
            wait = parse_retry_after(outcome.retry_after)
            if wait is not None:
                retry_after = max(wait, retry_after or 0.0)
        else:
            disposition = Disposition.RETRY
            error = f"{type(outcome).__name__}: {outcome}"
            if isinstance(outcome, ssl.SSLError):
                disposition = Disposition.PERMANENT
                permanent = _tls_problem(gateway, outcome)
        if disposition is Disposition.AUTH:
            auth_failed = True
            retry.append(event)
        elif disposition is Disposition.PERMANENT:
            retry.append(event)
        elif disposition is Disposition.REJECTED:
            dropped["rejected"] = dropped.get("rejected", 0) + event.items
            drop_errors["rejected"] = error
            dropped_events.append(event)
        elif disposition is Disposition.RETRY_FEW and event.attempts + 1 >= FEW_RETRIES:
            dropped["send_failed"] = dropped.get("send_failed", 0) + event.items
            drop_errors["send_failed"] = error
            dropped_events.append(event)
        else:
            retry.append(replace(event, attempts=event.attempts + 1))
    return SendResult(
        sent=sent,
        dropped=dropped,
        dropped_events=dropped_events,
        retry=retry,
        retry_after=retry_after,
        error=error,
        drop_errors=drop_errors,
        auth_failed=auth_failed,
        permanent=permanent,
    )


def _tls_problem(gateway: str, exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        return (
            f"cannot verify the TLS certificate of {gateway} ({why}); give the CA "
            "that signed it with SSL_CERT_FILE, REQUESTS_CA_BUNDLE or ca_file="
        )
    return (
        f"TLS with {gateway} failed ({exc}); check the scheme and port of "
        "COMPUTESDK_GATEWAY_URL"
    )


class EventsSink:
    """
    Posts each event to ``{gateway}/events`` with the sandbox's access token.

    Credentials resolve like the client's: argument > ``COMPUTESDK_*`` env > default.
    Several keep-alive connections carry requests concurrently (``AsyncTransport``);
    a proxy from the environment switches to ``ProxiedTransport``.

    Args:
        gateway_url: The gateway base URL.
        access_token: The sandbox access token; without one every send reports
            ``auth_failed`` (the engine pauses and keeps what it can).
        connections: Requests in flight at once (``CSE_BRIDGE_CONNECTIONS``, 16).
        transport: A ready transport (tests, custom TLS); overrides *connections*.
        ca_file: The CA bundle that verifies an ``https`` gateway's certificate;
            else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the system's.
    """

    def __init__(
        self,
        gateway_url: str | None = None,
        access_token: str | None = None,
        *,
        connections: int | None = None,
        transport: Transport | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.gateway_url = config.resolve_gateway_url(gateway_url)
        self.ca_file = resolve_ca_file(ca_file)
        self._token = config.resolve_access_token(access_token)
        self._connections = resolve_int(
            connections, ENV_CONNECTIONS, DEFAULT_CONNECTIONS
        )
        self._given_transport = transport
        self._transport: Transport | None = transport
        self._pid = os.getpid()
        # Callbacks of engines to wake when the token changes; appended rarely, read
        # by whichever thread replaces the token.
        self._listeners: list[Callable[[], None]] = []

    def add_token_listener(self, callback: Callable[[], None]) -> None:
        """Call *callback* (from the replacing thread) whenever the token changes."""
        self._listeners.append(callback)

    def set_access_token(self, token: str | None) -> None:
        """
        Use *token* from the next request on; resumes an engine paused by a 401/403.

        Safe from any thread; never blocks.
        """
        self._token = token
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # noqa: S112 - a listener's bug must not stop the others
                continue

    def spool_sandbox(self) -> str:
        """
        Which sandbox's spooled events this sink may send: the token's ``sandboxId``
        claim; a hash of an opaque token; ``no-token`` without one.
        """
        token = self._token
        if not token:
            return "no-token"
        sandbox = config.sandbox_from_token(token)
        if sandbox is not None:
            return sandbox
        return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]

    def _headers(self) -> bytes:
        return (
            f"Authorization: Bearer {self._token}\r\n"
            "Content-Type: application/json\r\n"
            f"User-Agent: {_USER_AGENT}\r\n"
        ).encode("latin-1", "replace")

    def _current_transport(self) -> Transport:
        if self._pid != os.getpid():
            # A fork child: the inherited connections belong to the parent.
            self._pid = os.getpid()
            if self._transport is not None:
                forget = getattr(self._transport, "forget", None)
                if forget is not None:
                    forget()
                if self._given_transport is None:
                    self._transport = None
        if self._transport is None:
            proxy = proxy_for(self.gateway_url)
            if proxy:
                self._transport = ProxiedTransport(
                    self.gateway_url, ca_file=self.ca_file
                )
            else:
                context = None
                if self.gateway_url.lower().startswith("https:"):
                    context = ssl.create_default_context(cafile=self.ca_file)
                self._transport = AsyncTransport(
                    self.gateway_url,
                    connections=self._connections,
                    ssl_context=context,
                )
        return self._transport

    def send(self, batch: Sequence[EncodedEvent], deadline: float) -> SendResult:
        """
        POST every event of *batch*; blocks until answered or monotonic *deadline*.

        Worker thread only. Stops taking new events at the first sign of a shared
        problem (connection error, 401/403, 429/503 with Retry-After): the rest are
        handed back as ``retry`` unattempted. Never raises.
        """
        if not self._token:
            return SendResult(
                retry=list(batch),
                auth_failed=True,
                error=f"no access token (set {config.ENV_ACCESS_TOKEN})",
            )
        try:
            transport = self._current_transport()
            outcomes = transport.post_many(
                [event.body for event in batch], self._headers(), deadline, _stop_rule
            )
        except Exception as exc:  # e.g. a bad gateway URL: retried, reported
            return SendResult(retry=list(batch), error=f"{type(exc).__name__}: {exc}")
        return account(batch, outcomes, gateway=self.gateway_url)

    def send_stream(
        self, events: Iterator[EncodedEvent], deadline: float
    ) -> tuple[list[EncodedEvent], SendResult]:
        """
        POST events taken from *events* one by one, as connections free up.

        Like ``send``, but the next event is pulled (and so encoded) only when a
        connection is ready for it: encoding overlaps the requests in flight. Events
        not pulled stay with the caller. Worker thread only; never raises.

        Returns:
            The events pulled, in order, and what became of them.
        """
        if not self._token:
            # Take one event, so the engine holds something to retry and pauses.
            first = next(events, None)
            held = [first] if first is not None else []
            return held, SendResult(
                retry=held,
                auth_failed=True,
                error=f"no access token (set {config.ENV_ACCESS_TOKEN})",
            )
        taken: list[EncodedEvent] = []

        def bodies() -> Iterator[bytes]:
            for event in events:
                taken.append(event)
                yield event.body

        try:
            transport = self._current_transport()
            outcomes = transport.post_many(
                bodies(), self._headers(), deadline, _stop_rule
            )
        except Exception as exc:  # e.g. a bad gateway URL: retried, reported
            return taken, SendResult(
                retry=list(taken), error=f"{type(exc).__name__}: {exc}"
            )
        outcomes.extend([None] * (len(taken) - len(outcomes)))
        return taken, account(taken, outcomes, gateway=self.gateway_url)

    def interrupt(self) -> None:
        """End the send in flight now (its events come back to retry). Any thread."""
        cut = getattr(self._transport, "interrupt", None)
        if cut is not None:
            with contextlib.suppress(Exception):  # best effort: the deadline holds
                cut()

    def close(self, timeout: float) -> None:
        """Close the connections; never raises. Call when the worker is done."""
        transport, self._transport = self._transport, None
        if transport is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # closing is best effort
                transport.close()


_SHARED: Final = frozenset({Disposition.AUTH, Disposition.RETRY, Disposition.PERMANENT})


def _stop_rule(index: int, outcome: Response | BaseException) -> bool:
    # A shared problem pauses every sender: connection trouble, auth, a wrong URL,
    # or a server asking for a pause. A single event's 400 or 500 does not.
    if not isinstance(outcome, Response):
        return True
    disposition = classify_status(outcome.status)
    return disposition in _SHARED

"""
How a send failure is handled: which answers are retried, how long to wait, Retry-After.

Pure functions and constants, no I/O; the sinks classify, the engine waits.
"""

from __future__ import annotations

import enum
import random
import time
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = [
    "AUTH_REPROBE_INTERVAL",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "FEW_RETRIES",
    "MAX_RETRY_AFTER",
    "PERMANENT_RETRY_INTERVAL",
    "Disposition",
    "backoff_delay",
    "classify_status",
    "parse_retry_after",
]

PERMANENT_RETRY_INTERVAL: Final = 30.0
"""Seconds between re-tries after a permanent error (bad URL, TLS, not a gateway)."""
AUTH_REPROBE_INTERVAL: Final = 60.0
"""Seconds between re-tries of refused credentials when no new token arrives."""
BACKOFF_BASE: Final = 0.25
"""Seconds of the first backoff ceiling; it doubles per consecutive failure."""
BACKOFF_CAP: Final = 30.0
"""Largest backoff ceiling in seconds."""
FEW_RETRIES: Final = 3
"""Attempts after which a non-transient failure (other 5xx, odd 4xx) drops the event."""
MAX_RETRY_AFTER: Final = 300.0
"""A ``Retry-After`` longer than this is capped: the process must keep shipping."""


class Disposition(enum.Enum):
    """What to do with one event after the gateway's answer."""

    SENT = "sent"
    """2xx: done."""
    RETRY = "retry"
    """Transient (connection, timeout, 408, 429, 502-504): retry, never give up."""
    RETRY_FEW = "retry_few"
    """Other 5xx and unexpected 4xx: retry ``FEW_RETRIES`` times, then drop."""
    REJECTED = "rejected"
    """400, 413, 422: this event is at fault; drop it alone."""
    AUTH = "auth"
    """401, 403: pause everything until the token is replaced."""
    PERMANENT = "permanent"
    """404, 405, a certificate that does not verify, a 2xx that is not the gateway's:
    a setup error. Keep the events, say it once, retry slowly."""


_TRANSIENT: Final = frozenset({408, 425, 429, 502, 503, 504})
_REJECTED: Final = frozenset({400, 413, 414, 415, 422})
_AUTH: Final = frozenset({401, 403})
_WRONG_URL: Final = frozenset({404, 405})


def classify_status(status: int) -> Disposition:
    """Return the disposition of an HTTP *status* for one posted event."""
    if 200 <= status < 300:  # noqa: PLR2004 - the 2xx range
        return Disposition.SENT
    if status in _TRANSIENT:
        return Disposition.RETRY
    if status in _AUTH:
        return Disposition.AUTH
    if status in _WRONG_URL:
        return Disposition.PERMANENT
    if status in _REJECTED:
        return Disposition.REJECTED
    return Disposition.RETRY_FEW


def backoff_delay(
    failures: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """
    Return a "full jitter" delay: uniform in [0, min(cap, base * 2 ** (failures - 1))].

    Full jitter spreads many clients' retries after a shared outage (AWS architecture
    blog, "Exponential Backoff And Jitter").
    """
    exponent = min(max(failures - 1, 0), 32)
    ceiling = min(cap, base * (2**exponent))
    return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Return the seconds a ``Retry-After`` header asks for, capped, or None.

    Accepts delta-seconds (also fractional) and an HTTP-date (RFC 9110 section 10.2.3);
    *now* is the wall-clock time for the date form (default ``time.time()``). The
    value is a floor under the normal backoff: None for 0, negative, past or
    unparsable values, which leave the backoff alone.
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds <= 0:  # NaN, now or past  # noqa: PLR0124
        # A floor of nothing: the normal backoff applies. Taking 0 literally
        # turned one 429 into tens of thousands of requests a second.
        return None
    return min(seconds, MAX_RETRY_AFTER)

"""Retry rules: classification, full-jitter backoff, Retry-After."""

from __future__ import annotations

import random

import pytest

from cse_bridge.engine._retry import (
    BACKOFF_CAP,
    MAX_RETRY_AFTER,
    Disposition,
    backoff_delay,
    classify_status,
    parse_retry_after,
)


class TestClassifyStatus:
    """classify_status()."""

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (200, Disposition.SENT),
            (429, Disposition.RETRY),
            (502, Disposition.RETRY),
            (503, Disposition.RETRY),
            (504, Disposition.RETRY),
            (500, Disposition.RETRY_FEW),
            (400, Disposition.REJECTED),
            (413, Disposition.REJECTED),
            (401, Disposition.AUTH),
            (403, Disposition.AUTH),
        ],
    )
    def test_status(self, status: int, expected: Disposition) -> None:
        """Each status maps to its documented disposition."""
        assert expected == classify_status(status)


class TestBackoff:
    """backoff_delay()."""

    def test_delay_stays_under_the_capped_ceiling(self) -> None:
        """Delays are within [0, min(cap, base * 2**(n-1))]."""
        rng = random.Random(7)
        delays = [backoff_delay(n, rng=rng) for n in range(1, 40)]
        assert all(
            0 <= d <= min(BACKOFF_CAP, 0.25 * 2 ** (n - 1))
            for n, d in enumerate(delays, 1)
        )


class TestRetryAfter:
    """parse_retry_after()."""

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("3", 3.0),
            ("0.5", 0.5),
            ("-4", None),
            ("0", None),
            ("Thu, 01 Jan 1970 00:00:01 GMT", None),
            ("99999", MAX_RETRY_AFTER),
            ("Thu, 01 Jan 1970 00:01:00 GMT", 50.0),
            ("soon", None),
            (None, None),
        ],
    )
    def test_values(self, header: str | None, expected: float | None) -> None:
        """Seconds and HTTP-dates parse; junk, zero and the past are None; capped."""
        assert expected == parse_retry_after(header, now=10.0)

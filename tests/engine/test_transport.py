"""The asyncio HTTP/1.1 transport's response parsing."""

from __future__ import annotations

import pytest

from cse_bridge.engine._transport import _dechunk, _parse_head, proxy_for


class TestParsing:
    """Response head and chunked bodies."""

    def test_head(self) -> None:
        """Status and lower-cased headers are parsed."""
        status, headers = _parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3")
        assert (429, {"retry-after": "3"}) == (status, headers)

    def test_not_http(self) -> None:
        """A non-HTTP answer raises ValueError (the connection is dropped)."""
        with pytest.raises(ValueError, match="not an HTTP response"):
            _parse_head(b"SSH-2.0-OpenSSH")

    def test_chunked_complete_and_partial(self) -> None:
        """A chunked body is returned only once its last chunk arrived."""
        full = bytearray(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n")
        assert b"Wikipedia" == _dechunk(full)
        assert _dechunk(bytearray(b"4\r\nWiki\r\n5\r\nped")) is None

    def test_proxy_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HTTPS_PROXY applies to https gateways, NO_PROXY exempts hosts."""
        monkeypatch.setenv("https_proxy", "http://proxy:3128")
        monkeypatch.setenv("no_proxy", "internal")
        assert ("http://proxy:3128", None) == (
            proxy_for("https://events.computesdk.com"),
            proxy_for("https://internal"),
        )

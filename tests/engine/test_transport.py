"""The asyncio HTTP/1.1 transport's response parsing."""

from __future__ import annotations

import pytest

from cse_bridge.engine._http11 import Response, ResponseReader
from cse_bridge.engine._http11 import dechunk as _dechunk
from cse_bridge.engine._http11 import parse_head as _parse_head
from cse_bridge.engine._proxied import proxy_for


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

    def test_reader_assembles_pieces_and_skips_interim_answers(self) -> None:
        """A response split anywhere is returned once complete; 100 is skipped."""
        reader = ResponseReader()
        raw = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nbusy"
        )
        answers = [reader.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)]
        assert [None] * (len(answers) - 1) == answers[:-1]
        assert (Response(503, "2", b"busy"), True) == (answers[-1], reader.close)

    def test_reader_reads_until_close_without_a_length(self) -> None:
        """Without Content-Length, the body is what arrived before the close."""
        reader = ResponseReader()
        assert reader.feed(b"HTTP/1.0 200 OK\r\n\r\n{}") is None
        assert Response(200, None, b"{}") == reader.at_eof()

    def test_proxy_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HTTPS_PROXY applies to https gateways, NO_PROXY exempts hosts."""
        monkeypatch.setenv("https_proxy", "http://proxy:3128")
        monkeypatch.setenv("no_proxy", "internal")
        assert ("http://proxy:3128", None) == (
            proxy_for("https://events.computesdk.com"),
            proxy_for("https://internal"),
        )

"""The asyncio HTTP/1.1 transport: response parsing, limits, odd answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cse_bridge.engine._http11 import MAX_BODY, Response, ResponseReader
from cse_bridge.engine._http11 import dechunk as _dechunk
from cse_bridge.engine._http11 import parse_head as _parse_head
from cse_bridge.engine._proxied import proxy_for
from cse_bridge.engine._transport import AsyncTransport, Outcome

from .servers import RawServer


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


_STORED = b'{"success":true,"data":{"eventId":"e"}}'


def _never(index: int, outcome: object) -> bool:
    return False


def _post_on(
    transport: AsyncTransport,
    bodies: Sequence[bytes] | Iterator[bytes],
    deadline: float = 5.0,
    stop: Callable[[int, Response | BaseException], bool] = _never,
) -> list[Outcome]:
    """POST *bodies* on *transport* within *deadline* seconds."""
    return transport.post_many(
        bodies,
        b"Content-Type: application/json\r\n",
        time.monotonic() + deadline,
        stop,
    )


def _post(
    url: str,
    bodies: int | Iterator[bytes] = 1,
    deadline: float = 5.0,
    *,
    connections: int = 1,
    stop: Callable[[int, Response | BaseException], bool] = _never,
) -> list[Outcome]:
    """POST *bodies* (a count of ``{}``, or the bodies) on a fresh transport."""
    transport = AsyncTransport(url, connections=connections)
    try:
        listed = [b"{}"] * bodies if isinstance(bodies, int) else bodies
        return _post_on(transport, listed, deadline, stop)
    finally:
        transport.close()


class TestReaderLimits:
    """Bodies are capped however they are framed; garbage is a ValueError."""

    def test_chunked_body_is_capped_like_a_sized_one(self) -> None:
        """A chunked body past MAX_BODY raises, as a Content-Length one does."""
        reader = ResponseReader()
        assert (
            reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            is None
        )
        chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"x" * 1024 * 1024)
        for _ in range(MAX_BODY // (1024 * 1024) - 1):
            assert reader.feed(chunk) is None
        with pytest.raises(ValueError, match="too large"):
            reader.feed(chunk * 2)
        with pytest.raises(ValueError, match="too large"):
            ResponseReader().feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"
            )

    def test_chunked_body_split_anywhere(self) -> None:
        """A chunked answer fed a byte at a time gives the same body, once."""
        raw = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n"
        )
        reader = ResponseReader()
        answers = [reader.feed(raw[i : i + 1]) for i in range(len(raw))]
        assert [Response(200, None, b"Wikipedia")] == [a for a in answers if a]
        assert answers[-1] is not None

    @pytest.mark.parametrize(
        "raw",
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            b"<html>hello</html>\r\n\r\n",
        ],
    )
    def test_garbage_is_a_value_error(self, raw: bytes) -> None:
        """Malformed chunk sizes, lengths and non-HTTP raise ValueError."""
        with pytest.raises(ValueError):  # noqa: PT011 - any message; the type matters
            ResponseReader().feed(raw)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=20))
    def test_fuzz_never_raises_anything_but_value_error(
        self, tail: bytes, cuts: list[int]
    ) -> None:
        """Any bytes, split anywhere: a Response, None, or ValueError; nothing else."""
        for prefix in (b"", b"HTTP/1.1 200 OK\r\n", _CHUNKED_HEAD):
            raw = prefix + tail
            reader = ResponseReader()
            pos = 0
            try:
                for cut in [*cuts, len(raw)]:
                    answer = reader.feed(raw[pos : pos + cut])
                    pos += cut
                    if answer is not None:
                        assert isinstance(answer.status, int)
                        break
                reader.at_eof()
            except ValueError:
                pass


_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class TestTransportAnswers:
    """The asyncio transport against raw servers."""

    def test_interim_1xx_then_the_answer(self) -> None:
        """A 100 Continue before the 200 is skipped."""
        answer = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
        )
        with RawServer(answer % (len(_STORED), _STORED)) as server:
            outcomes = _post(server.url, 3)
        assert [Response(200, None, _STORED)] * 3 == outcomes

    def test_connection_close_opens_a_new_connection(self) -> None:
        """Connection: close after each answer: every request still gets one."""
        answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        with RawServer(answer % (len(_STORED), _STORED), close=True) as server:
            outcomes = _post(server.url, 4)
            requests = server.requests
        assert ([Response(200, None, _STORED)] * 4, 4) == (outcomes, requests)

    def test_answer_larger_than_the_read_buffer(self) -> None:
        """A 300 KB answer arrives whole, over many reads into the one buffer."""
        body = b'{"eventId":"evt_1","pad":"' + b"x" * 300_000 + b'"}'
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        with RawServer(answer) as server:
            outcomes = _post(server.url, 3)
        assert [Response(200, None, body)] * 3 == outcomes

    def test_truncated_answer_is_a_connection_error(self) -> None:
        """A body cut short by the close is an error (retried), not a success."""
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
        with RawServer(answer, close=True) as server:
            outcomes = _post(server.url)
        assert 1 == len(outcomes)
        assert isinstance(outcomes[0], ConnectionResetError)

    def test_garbage_answer_is_a_value_error(self) -> None:
        """Not HTTP at all: the request's outcome is a ValueError."""
        with RawServer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server:
            outcomes = _post(server.url)
        assert 1 == len(outcomes)
        assert isinstance(outcomes[0], ValueError)

    def test_chunked_answer_over_the_cap_is_refused(self) -> None:
        """A 13 MB chunked answer is cut off at the cap, not accepted."""
        big = b"%x\r\n%s\r\n" % (1024 * 1024, b"x" * 1024 * 1024)
        answer = _CHUNKED_HEAD + big * 13 + b"0\r\n\r\n"
        with RawServer(answer, close=True) as server:
            outcomes = _post(server.url)
        assert 1 == len(outcomes)
        assert isinstance(outcomes[0], ValueError)


_OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_STORED), _STORED)


def _slow_bodies(count: int, made: list[float], seconds: float) -> Iterator[bytes]:
    """*count* bodies, each taking *seconds* to make (as a large pack does)."""
    for _ in range(count):
        time.sleep(seconds)
        made.append(time.monotonic())
        yield b"{}"


class TestLazySource:
    """Bodies made as lanes free up: what was made goes out while more are made."""

    def test_first_request_goes_out_before_every_lane_has_a_body(self) -> None:
        """Eight lanes, 20 ms a body: body 0 arrives long before body 7 is made."""
        made: list[float] = []
        with RawServer(_OK) as server:
            outcomes = _post(
                server.url, _slow_bodies(12, made, 0.02), 10.0, connections=8
            )
            arrivals, connections = list(server.arrivals), server.connections
        assert [Response(200, None, _STORED)] * 12 == outcomes
        # Pulling every lane's first body before any I/O sent nothing for 160 ms.
        assert arrivals[0] < made[7]
        assert connections <= 8

    def test_lanes_waiting_at_the_deadline_keep_their_connections(self) -> None:
        """A deadline amid slow bodies: the next send reuses the connections."""
        with RawServer(_OK) as server:
            transport = AsyncTransport(server.url, connections=4)
            try:
                first = _post_on(transport, _slow_bodies(40, [], 0.01), 0.1)
                second = _post_on(transport, [b"{}"] * 8)
            finally:
                transport.close()
            connections = server.connections
        assert 1 <= len(first) < 40  # cut short by the deadline
        assert [Response(200, None, _STORED)] * 8 == second
        # The deadline aborts the connections with a request in flight (their
        # outcome: TimeoutError); those waiting for their next body are kept. One
        # more may have been opening at the deadline, its connect then cancelled.
        cut = sum(isinstance(outcome, TimeoutError) for outcome in first)
        assert connections <= 4 + cut + 1

    def test_lanes_that_cannot_connect_give_each_body_the_error(self) -> None:
        """Nothing listens: every body pulled has the refusal as its outcome."""
        with socket.socket() as probe:  # a free port, closed again: nothing listens
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        made: list[float] = []
        outcomes = _post(
            f"http://127.0.0.1:{port}",
            _slow_bodies(10, made, 0.005),
            10.0,
            connections=4,
        )
        assert 10 == len(made) == len(outcomes)
        assert all(isinstance(outcome, ConnectionRefusedError) for outcome in outcomes)

    def test_one_slow_body_opens_at_most_two_connections(self) -> None:
        """A single large pack: one connection for it, at most one opened ahead."""
        with RawServer(_OK) as server:
            outcomes = _post(
                server.url, _slow_bodies(1, [], 0.02), 10.0, connections=16
            )
            connections = server.connections
        assert [Response(200, None, _STORED)] == outcomes
        assert connections <= 2

    def test_stop_while_lanes_wait_ends_the_send(self) -> None:
        """*stop* on the first answer: the lanes waiting to pull end at once."""
        made: list[float] = []
        with RawServer(_OK) as server:
            started = time.monotonic()
            outcomes = _post(
                server.url,
                _slow_bodies(40, made, 0.01),
                30.0,
                connections=8,
                stop=lambda index, outcome: True,
            )
        assert time.monotonic() - started < 10.0  # not the deadline
        assert Response(200, None, _STORED) == outcomes[0]
        assert len(made) < 40

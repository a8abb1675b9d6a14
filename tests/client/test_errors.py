"""The client's one error-translation boundary (client/_errors.py)."""

from __future__ import annotations

import http.client
import inspect
import socket
import ssl

import pytest
import requests
import requests.exceptions as rex
import urllib3.exceptions

from cse_bridge import EventsAuthError, EventsClient, EventsError, EventsNetworkError
from cse_bridge.client._errors import (
    INVALID_RESPONSE,
    MAX_MESSAGE_CHARS,
    request_data,
)

from .servers import RecordingServer, Reply, raw_server, read_request_head

# Every exception a Session.request call can raise, and what it must become.
TRANSLATIONS: list[tuple[BaseException, type[EventsError]]] = [
    (rex.ConnectTimeout("connect timed out"), EventsNetworkError),
    (rex.ReadTimeout("read timed out"), EventsNetworkError),
    (rex.Timeout("timed out"), EventsNetworkError),
    (rex.ConnectionError("refused"), EventsNetworkError),
    (rex.ProxyError("proxy down"), EventsNetworkError),
    (rex.SSLError("bad certificate"), EventsNetworkError),
    (rex.ChunkedEncodingError("broken chunk"), EventsNetworkError),
    (rex.ContentDecodingError("bad gzip"), EventsNetworkError),
    (rex.RetryError("gave up"), EventsNetworkError),
    (rex.TooManyRedirects("loop"), EventsError),
    (rex.HTTPError("raise_for_status"), EventsError),
    (rex.URLRequired("no url"), EventsError),
    (rex.MissingSchema("no scheme"), EventsError),
    (rex.InvalidSchema("gopher"), EventsError),
    (rex.InvalidURL("bad url"), EventsError),
    (rex.InvalidProxyURL("bad proxy url"), EventsError),
    (rex.InvalidHeader("bad header"), EventsError),
    (rex.InvalidJSONError("bad json"), EventsError),
    (rex.JSONDecodeError("bad json", "doc", 0), EventsError),
    (rex.StreamConsumedError("consumed"), EventsError),
    (rex.UnrewindableBodyError("cannot rewind"), EventsError),
    (rex.RequestException("anything else"), EventsError),
    (urllib3.exceptions.ProtocolError("connection aborted"), EventsNetworkError),
    (
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),
        EventsNetworkError,
    ),  # type: ignore[arg-type]
    (urllib3.exceptions.DecodeError("bad gzip"), EventsNetworkError),
    (urllib3.exceptions.HTTPError("leaked"), EventsNetworkError),
    (http.client.RemoteDisconnected("closed"), EventsNetworkError),
    (http.client.IncompleteRead(b"partial"), EventsNetworkError),
    (ConnectionResetError("reset"), EventsNetworkError),
    (ConnectionRefusedError("refused"), EventsNetworkError),
    (TimeoutError("timed out"), EventsNetworkError),
    (socket.gaierror("name resolution"), EventsNetworkError),
    (ssl.SSLError("handshake"), EventsNetworkError),
    (OSError("certificate file missing"), EventsNetworkError),
]


def _requests_exception_classes() -> set[type[BaseException]]:
    """Every exception class requests.exceptions defines."""
    return {
        cls
        for _, cls in inspect.getmembers(rex, inspect.isclass)
        if issubclass(cls, rex.RequestException)
    }


def _raiser(exc: BaseException):
    def send() -> requests.Response:
        raise exc

    return send


class TestRequestDataExceptions:
    """Every exception the HTTP library can raise becomes an EventsError subclass."""

    @pytest.mark.parametrize(
        ("exc", "expected"), TRANSLATIONS, ids=lambda v: type(v).__name__
    )
    def test_translation(self, exc: BaseException, expected: type[EventsError]) -> None:
        """The exception becomes exactly the expected class, with its cause chained."""
        with pytest.raises(EventsError) as info:
            request_data(_raiser(exc))
        assert expected is type(info.value)
        assert exc is info.value.__cause__
        assert None is info.value.status_code

    def test_every_requests_exception_is_covered(self) -> None:
        """The table above covers every class that requests.exceptions defines."""
        covered = {type(exc) for exc, _ in TRANSLATIONS}
        expected: set[type[BaseException]] = set()
        assert expected == _requests_exception_classes() - covered

    def test_timeouts_say_so(self) -> None:
        """A timeout's message starts with "Request timeout", like the official SDK."""
        with pytest.raises(EventsNetworkError, match=r"^Request timeout"):
            request_data(_raiser(rex.ConnectTimeout("x")))

    def test_programming_errors_pass_through(self) -> None:
        """A non-I/O exception (a bug) is not disguised as an EventsError."""
        with pytest.raises(ZeroDivisionError):
            request_data(_raiser(ZeroDivisionError()))


@pytest.fixture
def client_for():
    """Build a client (key and token set) for a server URL; closed afterwards."""
    clients: list[EventsClient] = []

    def make(url: str, **kwargs: object) -> EventsClient:
        client = EventsClient(
            gateway_url=url, api_key="key", access_token="tok", **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class TestHttpAnswers:
    """Non-2xx answers and malformed envelopes, from a real HTTP server."""

    def test_401_is_auth_error_with_body_text(self, client_for) -> None:
        """401 raises EventsAuthError whose message is the body text."""
        body = '{"success":false,"error":"Invalid API key"}'
        with (
            RecordingServer(Reply(401, body.encode())) as server,
            pytest.raises(EventsAuthError) as info,
        ):
            client_for(server.url).get_events("s")
        expected = (body, 401)
        assert expected == (info.value.message, info.value.status_code)

    @pytest.mark.parametrize("status", [400, 403, 404, 413, 429, 500, 502, 503])
    def test_other_status_is_events_error(self, client_for, status: int) -> None:
        """Any other non-2xx raises a plain EventsError with the status code."""
        with (
            RecordingServer(Reply(status, b"it went wrong")) as server,
            pytest.raises(EventsError) as info,
        ):
            client_for(server.url).store_event("custom")
        assert EventsError is type(info.value)
        expected = ("it went wrong", status)
        assert expected == (info.value.message, info.value.status_code)

    def test_empty_error_body_names_the_status(self, client_for) -> None:
        """An error answer without a body still gets a readable message."""
        with RecordingServer(Reply(503)) as server, pytest.raises(EventsError) as info:
            client_for(server.url).store_event("custom")
        expected = "HTTP 503 Service Unavailable"
        assert expected == info.value.message

    def test_redirect_is_not_followed(self, client_for) -> None:
        """A 3xx is reported, not followed: the API key must not travel elsewhere."""
        reply = Reply(302, b"", {"Location": "http://elsewhere.invalid/"})
        with RecordingServer(reply) as server:
            with pytest.raises(EventsError) as info:
                client_for(server.url).get_events("s")
            expected = 1
            assert expected == len(server.requests)
        expected_status = 302
        assert expected_status == info.value.status_code

    def test_long_body_is_cut(self, client_for) -> None:
        """A huge error page is cut to MAX_MESSAGE_CHARS characters plus an ellipsis."""
        with (
            RecordingServer(Reply(500, b"x" * 100_000)) as server,
            pytest.raises(EventsError) as info,
        ):
            client_for(server.url).store_event("custom")
        expected = MAX_MESSAGE_CHARS + 3
        assert expected == len(info.value.message)

    def test_declared_charset_is_used(self, client_for) -> None:
        """An error body is decoded with its declared charset, else as UTF-8."""
        latin = Reply(
            400,
            "café".encode("latin-1"),
            {"Content-Type": "text/plain; charset=latin-1"},
        )
        plain = Reply(400, "café".encode(), {"Content-Type": "text/plain"})
        messages = []
        for reply in (latin, plain):
            with RecordingServer(reply) as server:
                with pytest.raises(EventsError) as info:
                    client_for(server.url).store_event("custom")
                messages.append(info.value.message)
        expected = ["café", "café"]
        assert expected == messages

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"not json",
            b"\xff\xfe garbage",
            b"[1, 2]",
            b'"text"',
            b"null",
            b'{"success": false, "data": {}}',
            b'{"success": "true", "data": {}}',
            b'{"success": 1, "data": {}}',
            b'{"success": true}',
            b'{"success": true, "data": null}',
            b"[" * 100_000,
        ],
        ids=lambda b: b[:30].decode("latin-1"),
    )
    def test_invalid_envelope(self, client_for, body: bytes) -> None:
        """A 2xx whose body is not a success envelope with data is invalid."""
        reply = Reply(200, body, {"Content-Type": "application/json"})
        with RecordingServer(reply) as server, pytest.raises(EventsError) as info:
            client_for(server.url).get_events("s")
        assert EventsError is type(info.value)
        expected = INVALID_RESPONSE
        assert expected == info.value.message

    def test_invalid_store_result(self, client_for) -> None:
        """A success envelope whose data lacks the result fields is invalid."""
        with (
            RecordingServer(Reply.envelope({"eventId": "e"})) as server,
            pytest.raises(EventsError, match=INVALID_RESPONSE),
        ):
            client_for(server.url).store_event("custom")

    def test_other_2xx_with_envelope_is_accepted(self, client_for) -> None:
        """Any 2xx status with a valid envelope counts as success."""
        data = {"sandboxId": "s", "events": [], "count": 0}
        with RecordingServer(Reply.envelope(data, status=201)) as server:
            expected: list[object] = []
            assert expected == client_for(server.url).get_events("s")


@pytest.fixture
def closed_port() -> int:
    """A local port that nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class TestNetworkFailures:
    """Real socket-level failures become EventsNetworkError."""

    def test_connection_refused(self, client_for, closed_port: int) -> None:
        """Nothing listening raises EventsNetworkError."""
        client = client_for(f"http://127.0.0.1:{closed_port}")
        with pytest.raises(EventsNetworkError):
            client.get_events("s")

    def test_read_timeout(self, client_for) -> None:
        """A server that never answers raises EventsNetworkError after the timeout."""

        def silent(conn: socket.socket) -> None:
            while conn.recv(65536):  # until the client gives up and closes
                pass

        with (
            raw_server(silent) as url,
            pytest.raises(EventsNetworkError, match=r"^Request timeout"),
        ):
            client_for(url, timeout=0.2).store_event("custom")

    def test_connection_closed_without_answer(self, client_for) -> None:
        """A server that hangs up without answering raises EventsNetworkError."""
        with raw_server(read_request_head) as url, pytest.raises(EventsNetworkError):
            client_for(url).store_event("custom")

    def test_truncated_body(self, client_for) -> None:
        """A body cut short of its Content-Length raises EventsNetworkError."""

        def truncated(conn: socket.socket) -> None:
            read_request_head(conn)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"success": tr'
            )

        with raw_server(truncated) as url, pytest.raises(EventsNetworkError):
            client_for(url).get_events("s")

    def test_broken_chunked_body(self, client_for) -> None:
        """A malformed chunked body raises EventsNetworkError."""

        def broken(conn: socket.socket) -> None:
            read_request_head(conn)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\nnot a chunk\r\n"
            )

        with raw_server(broken) as url, pytest.raises(EventsNetworkError):
            client_for(url).get_events("s")

    def test_garbage_status_line(self, client_for) -> None:
        """A reply that is not HTTP raises EventsNetworkError."""

        def garbage(conn: socket.socket) -> None:
            read_request_head(conn)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        with raw_server(garbage) as url, pytest.raises(EventsNetworkError):
            client_for(url).get_events("s")

    def test_bad_gzip_body(self, client_for) -> None:
        """A body that claims gzip but is not raises EventsNetworkError."""

        def bad_gzip(conn: socket.socket) -> None:
            read_request_head(conn)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: 8\r\n\r\nnot gzip"
            )

        with raw_server(bad_gzip) as url, pytest.raises(EventsNetworkError):
            client_for(url).get_events("s")

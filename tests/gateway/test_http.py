"""
The events HTTP API on real sockets: paths, envelopes and errors.

See docs/protocol.md#protocol-http.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cse_bridge.gateway import GatewayThread

from ..conftest import make_gateway_config
from ..helpers import API_KEY, WORKSPACE, sample, scrape

SANDBOX = "sbx-http"


def post_event(
    session: requests.Session,
    gateway: GatewayThread,
    body: Any,
    *,
    token: str | None = None,
) -> requests.Response:
    """POST /events with *body* (an object to encode as JSON, or raw bytes)."""
    headers = {
        "Authorization": f"Bearer {token or gateway.issue_token(SANDBOX)}",
        "Content-Type": "application/json",
    }
    data = body if isinstance(body, bytes) else json.dumps(body)
    return session.post(f"{gateway.http_url}/events", data=data, headers=headers)


def get_events(
    session: requests.Session,
    gateway: GatewayThread,
    sandbox_id: str = SANDBOX,
    *,
    api_key: str = API_KEY,
    **params: str | int,
) -> requests.Response:
    """GET /events/{sandbox_id} with the query *params*."""
    return session.get(
        f"{gateway.http_url}/events/{sandbox_id}",
        params=params,
        headers={"X-API-Key": api_key},
    )


def store_events(
    session: requests.Session, gateway: GatewayThread, types: list[str]
) -> list[dict[str, Any]]:
    """Store one event per type (``data.i`` is its index); return the results."""
    token = gateway.issue_token(SANDBOX)
    results = []
    for i, event_type in enumerate(types):
        answer = post_event(
            session, gateway, {"type": event_type, "data": {"i": i}}, token=token
        )
        assert 200 == answer.status_code, answer.text
        results.append(answer.json()["data"])
    return results


def read(answer: requests.Response) -> list[dict[str, Any]]:
    """The events of a successful GET answer, checking the envelope on the way."""
    assert 200 == answer.status_code, answer.text
    envelope = answer.json()
    assert True is envelope["success"]
    assert len(envelope["data"]["events"]) == envelope["data"]["count"]
    events: list[dict[str, Any]] = envelope["data"]["events"]
    return events


def connect(gateway: GatewayThread) -> socket.socket:
    """A raw connection to *gateway*'s HTTP port (reads time out after 10 s)."""
    host, port = gateway.http_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything *sock* receives until the other side closes."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def exchange(gateway: GatewayThread, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send *parts* on one raw connection, *pause* s apart; read until it closes."""
    with connect(gateway) as sock:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            sock.sendall(part)
        return read_to_close(sock)


def assert_error(answer: requests.Response, status: int, fragment: str) -> None:
    """Check the status, the JSON content type and the error envelope."""
    assert status == answer.status_code, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    envelope = answer.json()
    assert False is envelope["success"]
    assert fragment in envelope["error"]


class TestPostEvents:
    """POST /events stores one event for the token's sandbox."""

    def test_store_answers_the_result_envelope(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A stored event is answered with its id, sandbox, type and timestamp."""
        answer = post_event(session, any_gateway, {"type": "custom", "data": {"a": 1}})
        assert 200 == answer.status_code
        assert answer.headers["Content-Type"].startswith("application/json")
        envelope = answer.json()
        assert True is envelope["success"]
        result = envelope["data"]
        assert {"eventId", "sandboxId", "type", "timestamp"} == set(result)
        assert (SANDBOX, "custom") == (result["sandboxId"], result["type"])
        assert result["eventId"].startswith("evt_")
        assert isinstance(result["timestamp"], int)

    def test_round_trip_returns_the_sandbox_event(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """What was stored reads back as a complete SandboxEvent."""
        data = {"text": "héllo ✓", "n": [1, 2.5, None, True], "nested": {"k": {}}}
        result = post_event(
            session, any_gateway, {"type": "log.info", "data": data}
        ).json()["data"]
        expected = {
            "id": result["eventId"],
            "sandboxId": SANDBOX,
            "workspaceId": WORKSPACE,
            "type": "log.info",
            "data": data,
            "timestamp": result["timestamp"],
        }
        assert [expected] == read(get_events(session, any_gateway))

    def test_data_defaults_to_an_empty_object(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """An event without data is stored with data {}."""
        post_event(session, gateway, {"type": "system.ready"})
        assert [{}] == [e["data"] for e in read(get_events(session, gateway))]

    def test_sandbox_comes_from_the_token_not_the_body(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A sandboxId in the body is ignored: the token names the sandbox."""
        answer = post_event(
            session, gateway, {"type": "custom", "sandboxId": "someone-else"}
        )
        assert SANDBOX == answer.json()["data"]["sandboxId"]
        assert [] == read(get_events(session, gateway, "someone-else"))

    def test_lone_surrogates_are_kept_as_json_escapes(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Text with an unpaired surrogate (not UTF-8 encodable) is stored escaped."""
        body = b'{"type":"custom","data":{"path":"caf\\udcff \\u00e9"}}'
        assert 200 == post_event(session, any_gateway, body).status_code
        events = read(get_events(session, any_gateway))
        assert ["caf\udcff é"] == [e["data"]["path"] for e in events]


class TestGetEvents:
    """GET /events/{sandboxId} filters by type, since and limit."""

    def test_events_come_in_ascending_timestamp_order(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Events are listed oldest first, with strictly increasing timestamps."""
        store_events(session, any_gateway, ["a"] * 5)
        events = read(get_events(session, any_gateway))
        assert [0, 1, 2, 3, 4] == [e["data"]["i"] for e in events]
        stamps = [e["timestamp"] for e in events]
        assert sorted(set(stamps)) == stamps

    def test_type_filter_matches_exactly(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Only events of exactly the given type are returned."""
        store_events(session, any_gateway, ["log.info", "log.infos", "log.info", "x"])
        events = read(get_events(session, any_gateway, type="log.info"))
        assert [0, 2] == [e["data"]["i"] for e in events]

    def test_since_is_strictly_after(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """since=<timestamp of event 1> returns the events after it, not event 1."""
        results = store_events(session, any_gateway, ["a"] * 4)
        events = read(get_events(session, any_gateway, since=results[1]["timestamp"]))
        assert [2, 3] == [e["data"]["i"] for e in events]

    def test_since_with_limit_returns_the_oldest_after(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """With since, limit keeps the first events after the timestamp."""
        store_events(session, any_gateway, ["a"] * 5)
        events = read(get_events(session, any_gateway, since=0, limit=2))
        assert [0, 1] == [e["data"]["i"] for e in events]

    def test_limit_without_since_returns_the_newest(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Without since, limit keeps the newest events, still in ascending order."""
        store_events(session, any_gateway, ["a", "b", "a", "b", "a"])
        assert [3, 4] == [
            e["data"]["i"] for e in read(get_events(session, any_gateway, limit=2))
        ]
        typed = read(get_events(session, any_gateway, limit=2, type="a"))
        assert [2, 4] == [e["data"]["i"] for e in typed]

    def test_default_limit_is_100(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Without a limit, the newest 100 events are returned."""
        store_events(session, gateway, ["a"] * 105)
        events = read(get_events(session, gateway))
        assert list(range(5, 105)) == [e["data"]["i"] for e in events]

    def test_huge_since_finds_nothing(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A since later than any timestamp (even beyond 64 bits) returns nothing."""
        store_events(session, any_gateway, ["a"])
        assert [] == read(get_events(session, any_gateway, since="9" * 40))

    def test_unknown_sandbox_is_empty(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A sandbox nobody stored to answers 200 with no events."""
        answer = get_events(session, any_gateway, "never-used")
        assert [] == read(answer)
        assert "never-used" == answer.json()["data"]["sandboxId"]

    def test_paging_forward_loses_and_repeats_nothing(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Paging with since=<last timestamp> over a fast burst sees each event once."""
        token = any_gateway.issue_token(SANDBOX)
        total = 2000
        for i in range(total):
            post_event(
                session, any_gateway, {"type": "t", "data": {"i": i}}, token=token
            )
        seen: list[int] = []
        since = 0
        while True:
            page = read(get_events(session, any_gateway, since=since, limit=100))
            if not page:
                break
            seen.extend(e["data"]["i"] for e in page)
            since = page[-1]["timestamp"]
        assert list(range(total)) == seen


class TestBadRequests:
    """Every bad input answers a clear error envelope, never a 500."""

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"{not json", "not valid JSON"),
            (b"", "not valid JSON"),
            (b'{"type":"a"} trailing', "not valid JSON"),
            (b"\xff\xfe{}", "not valid JSON"),
            (b'{"type":"a","data":{"x":NaN}}', "NaN is not valid JSON"),
            (b'{"type":"a","data":{"x":-Infinity}}', "Infinity is not valid JSON"),
            (b'{"type":"a","data":{"x":1e999}}', "out of range"),
            (b"[" * 100_000, "nested too deeply"),
            (b'{"type":"a","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),
            (b'["type","a"]', "must be a JSON object"),
            (b'"text"', "must be a JSON object"),
            (b"{}", "'type' is required"),
            (b'{"type":""}', "'type' is required"),
            (b'{"type":42}', "'type' is required"),
            (b'{"type":"' + b"t" * 257 + b'"}', "longer than 256"),
            (b'{"type":"\\ud800"}', "unpaired surrogate"),
            (b'{"type":"a","data":[1]}', "'data' must be a JSON object"),
            (b'{"type":"a","data":"x"}', "'data' must be a JSON object"),
            (b'{"type":"a","data":null}', "'data' must be a JSON object"),
        ],
    )
    def test_bad_post_body_answers_400(
        self,
        any_gateway: GatewayThread,
        session: requests.Session,
        body: bytes,
        fragment: str,
    ) -> None:
        """A malformed body answers 400 and the next good request still works."""
        assert_error(post_event(session, any_gateway, body), 400, fragment)
        assert 200 == post_event(session, any_gateway, {"type": "ok"}).status_code

    @pytest.mark.parametrize(
        ("params", "fragment"),
        [
            ({"limit": "0"}, "'limit'"),
            ({"limit": "1001"}, "'limit'"),
            ({"limit": "-1"}, "'limit'"),
            ({"limit": "1.5"}, "'limit'"),
            ({"limit": "ten"}, "'limit'"),
            ({"limit": ""}, "'limit'"),
            ({"limit": "\u0661\u0660"}, "'limit'"),  # Arabic-Indic "10"
            ({"since": "-1"}, "'since'"),
            ({"since": "1e3"}, "'since'"),
            ({"since": "yesterday"}, "'since'"),
            ({"since": ""}, "'since'"),
        ],
    )
    def test_bad_query_answers_400(
        self,
        any_gateway: GatewayThread,
        session: requests.Session,
        params: dict[str, str],
        fragment: str,
    ) -> None:
        """A bad limit or since answers 400 and the next good request still works."""
        assert_error(get_events(session, any_gateway, **params), 400, fragment)
        assert [] == read(get_events(session, any_gateway))

    def test_limit_bounds_are_accepted(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """limit=1 and limit=1000 are both valid."""
        store_events(session, gateway, ["a", "a"])
        assert 1 == len(read(get_events(session, gateway, limit=1)))
        assert 2 == len(read(get_events(session, gateway, limit=1000)))

    def test_unknown_path_answers_404(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """An unknown path answers 404 in the error envelope."""
        assert_error(session.get(f"{gateway.http_url}/nope"), 404, "Not found")
        assert_error(session.get(f"{gateway.http_url}/events/"), 404, "Not found")
        # A decoded newline must not slip past the router.
        assert_error(session.get(f"{gateway.http_url}/a%0Ab"), 404, "Not found")
        assert_error(session.get(f"{gateway.http_url}/"), 404, "Not found")

    @pytest.mark.parametrize(
        ("line", "method"),
        [
            (b"OPTIONS * HTTP/1.1", "OPTIONS"),
            (b"CONNECT example.com:443 HTTP/1.1", "other"),
            (b"GET http://example.com HTTP/1.1", "GET"),
        ],
    )
    def test_target_without_a_path_is_answered_and_counted(
        self, gateway: GatewayThread, line: bytes, method: str
    ) -> None:
        """No route can match these targets: still the envelope, and /metrics counts."""
        answer = exchange(gateway, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404"), head
        assert json.loads(body)["success"] is False
        counted = sample(
            scrape(f"{gateway.http_url}/metrics"),
            "cse_gateway_http_requests_total",
            route="unmatched",
            method=method,
            status="404",
        )
        assert 1 == counted

    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("GET", "/events", "POST"),
            ("PUT", "/events", "POST"),
            ("DELETE", "/events/sbx", "GET,HEAD"),
            ("POST", "/events/sbx", "GET,HEAD"),
            ("POST", "/healthz", "GET,HEAD"),
            ("OPTIONS", "/metrics", "GET,HEAD"),
        ],
    )
    def test_wrong_method_answers_405_with_allow(
        self,
        gateway: GatewayThread,
        session: requests.Session,
        method: str,
        path: str,
        allow: str,
    ) -> None:
        """A known path with the wrong method answers 405 and names the right ones."""
        answer = session.request(method, f"{gateway.http_url}{path}")
        assert_error(answer, 405, "not allowed")
        assert allow == answer.headers["Allow"]

    def test_overlong_sandbox_id_reads_as_unknown(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A sandbox id no token could carry answers like an unknown sandbox."""
        assert [] == read(get_events(session, gateway, "s" * 300))


def raw_post_head(gateway: GatewayThread, body: bytes, *extra: bytes) -> bytes:
    """The head of a POST /events of *body*, with *extra* header lines."""
    return b"\r\n".join(
        [
            b"POST /events HTTP/1.1",
            b"Host: x",
            b"Authorization: Bearer " + gateway.issue_token(SANDBOX).encode(),
            b"Content-Length: " + str(len(body)).encode(),
            b"Connection: close",
            *extra,
            b"",
            b"",
        ]
    )


class TestRouting:
    """What web.Application did for us and the gateway's own router does now."""

    def test_expect_100_continue_gets_the_interim_answer_first(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A client waiting for ``100 Continue`` (curl, for a large body) gets it."""
        body = json.dumps({"type": "continued", "data": {"x": 1}}).encode()
        with connect(gateway) as sock:
            sock.sendall(raw_post_head(gateway, body, b"Expect: 100-continue"))
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):  # bounded by the timeout
                interim += sock.recv(1)
            assert b"HTTP/1.1 100 Continue\r\n\r\n" == interim
            sock.sendall(body)
            answer = read_to_close(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert ["continued"] == [e["type"] for e in read(get_events(session, gateway))]

    def test_unknown_expectation_answers_417_and_stores_nothing(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """An expectation the server cannot meet is refused in the envelope."""
        body = json.dumps({"type": "refused"}).encode()
        answer = exchange(gateway, raw_post_head(gateway, body, b"Expect: 42") + body)
        head, _, envelope = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 417"), head
        assert (
            "Unsupported Expect: 42; only 100-continue is"
            == (json.loads(envelope)["error"])
        )
        assert [] == read(get_events(session, gateway))
        counted = sample(
            scrape(f"{gateway.http_url}/metrics"),
            "cse_gateway_http_requests_total",
            route="unmatched",
            method="POST",
            status="417",
        )
        assert 1 == counted

    def test_empty_expectation_is_no_expectation(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """An empty ``Expect:`` asks for nothing: the event is stored, as before."""
        body = json.dumps({"type": "plain"}).encode()
        answer = exchange(gateway, raw_post_head(gateway, body, b"Expect: ") + body)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert ["plain"] == [e["type"] for e in read(get_events(session, gateway))]

    def test_head_answers_get_routes_without_a_body(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """HEAD is served wherever GET is, with GET's headers and no body."""
        for path in ("/healthz", f"/events/{SANDBOX}"):
            answer = session.head(
                f"{gateway.http_url}{path}", headers={"X-API-Key": API_KEY}
            )
            assert 200 == answer.status_code, path
            assert b"" == answer.content
            assert int(answer.headers["Content-Length"]) > 0

    def test_sandbox_id_in_the_path_is_percent_decoded(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """An encoded id names the same sandbox; an encoded slash stays in the id."""
        store_events(session, gateway, ["a"])
        # Raw: requests would decode the unreserved characters before sending.
        encoded = "".join(f"%{ord(c):02X}" for c in SANDBOX).encode()
        answer_bytes = exchange(
            gateway,
            b"GET /events/" + encoded + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-API-Key: " + API_KEY.encode() + b"\r\nConnection: close\r\n\r\n",
        )
        head, _, envelope = answer_bytes.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        data = json.loads(envelope)["data"]
        assert (SANDBOX, ["a"]) == (
            data["sandboxId"],
            [e["type"] for e in data["events"]],
        )
        answer = get_events(session, gateway, "a%2Fb")
        assert [] == read(answer)
        assert "a/b" == answer.json()["data"]["sandboxId"]
        assert_error(get_events(session, gateway, "a/b"), 404, "Not found")


@pytest.fixture
def small_gateway() -> Iterator[GatewayThread]:
    """A gateway that accepts bodies of at most 1 KiB."""
    from cse_bridge.gateway import GatewayLimits

    config = make_gateway_config(limits=GatewayLimits(max_body_bytes=1024))
    with GatewayThread(config) as gw:
        yield gw


class TestBodyLimit:
    """A body over the limit answers 413 in our envelope, however it is sent."""

    def test_content_length_over_the_limit_answers_413(
        self, small_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A declared length over the limit is refused, and the next request works."""
        body = json.dumps({"type": "a", "data": {"x": "y" * 2000}}).encode()
        assert_error(post_event(session, small_gateway, body), 413, "1024 bytes")
        assert 200 == post_event(session, small_gateway, {"type": "a"}).status_code

    def test_chunked_body_over_the_limit_answers_413(
        self, small_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A chunked body is counted while it is read and refused past the limit."""
        token = small_gateway.issue_token(SANDBOX)
        chunks = iter([b'{"type":"a","data":{"x":"', *[b"y" * 256] * 8, b'"}}'])
        answer = session.post(
            f"{small_gateway.http_url}/events",
            data=chunks,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert "chunked" == answer.request.headers["Transfer-Encoding"]
        assert_error(answer, 413, "1024 bytes")
        assert 200 == post_event(session, small_gateway, {"type": "a"}).status_code

    def test_body_at_the_limit_is_accepted(
        self, small_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A body of exactly the limit is stored."""
        head, tail = b'{"type":"a","data":{"x":"', b'"}}'
        body = head + b"y" * (1024 - len(head) - len(tail)) + tail
        assert 200 == post_event(session, small_gateway, body).status_code

    def test_body_sent_after_its_head_is_stored_whole(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A body still on its way when the head arrived is waited for, not cut."""
        body = b'{"type":"late","data":{"x":"' + b"y" * 200 + b'"}}'
        head = raw_post_head(gateway, body)
        # The handler runs in the pause, with part of the body.
        answer = exchange(gateway, head + body[:20], body[20:], pause=0.2)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert [{"x": "y" * 200}] == [
            event["data"] for event in read(get_events(session, gateway))
        ]

    def test_gzip_body_is_stored_decompressed(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A body sent with Content-Encoding: gzip is stored as what it encodes."""
        body = gzip.compress(json.dumps({"type": "z", "data": {"n": 1}}).encode())
        answer = session.post(
            f"{gateway.http_url}/events",
            data=body,
            headers={
                "Authorization": f"Bearer {gateway.issue_token(SANDBOX)}",
                "Content-Encoding": "gzip",
            },
        )
        assert 200 == answer.status_code, answer.text
        assert [{"n": 1}] == [
            event["data"] for event in read(get_events(session, gateway))
        ]

    def test_early_413_on_raw_socket_keeps_the_envelope(
        self, small_gateway: GatewayThread
    ) -> None:
        """Refused before the body is sent, a client still reads our JSON answer."""
        token = small_gateway.issue_token(SANDBOX)
        request = (
            "POST /events HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with connect(small_gateway) as sock:
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += sock.recv(65536)
            # The gateway drains the unread body, then honours Connection: close.
            sock.sendall(b"x" * 100_000)
            while sock.recv(65536):
                pass
        assert head.startswith(b"HTTP/1.1 413")
        assert {
            "success": False,
            "error": "Request body is larger than 1024 bytes",
        } == (json.loads(body))

"""Access tokens and API keys: the Authenticator itself, and the HTTP API's 401s."""

from __future__ import annotations

import jwt
import pytest
import requests

from cse_bridge.errors import EventsAuthError
from cse_bridge.gateway import Authenticator, GatewayThread, issue_token

from ..helpers import API_KEY, API_KEYS, OTHER_API_KEY, OTHER_WORKSPACE, SECRET
from .test_http import SANDBOX, assert_error, get_events, post_event, read

OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"


class FakeClock:
    """Unix seconds that only move when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestAuthenticator:
    """Authenticator verifies tokens against its secret and clock."""

    def test_issued_token_verifies_to_its_claims(self) -> None:
        """A token it issued names the sandbox and workspace it was issued for."""
        auth = Authenticator(SECRET, API_KEYS)
        claims = auth.verify_token(auth.issue_token("sbx", 7))
        assert ("sbx", 7) == (claims.sandbox_id, claims.workspace_id)

    def test_token_expires_on_the_injected_clock(self) -> None:
        """A cached, once valid token is refused once the clock passes its exp."""
        clock = FakeClock()
        auth = Authenticator(SECRET, API_KEYS, clock=clock)
        token = auth.issue_token("sbx", 1, ttl=60)
        auth.verify_token(token)
        clock.now += 60
        with pytest.raises(EventsAuthError, match="expired"):
            auth.verify_token(token)

    def test_token_without_ttl_never_expires(self) -> None:
        """ttl=None issues a token without exp."""
        clock = FakeClock()
        auth = Authenticator(SECRET, API_KEYS, clock=clock)
        token = auth.issue_token("sbx", 1, ttl=None)
        clock.now += 10**9
        assert None is auth.verify_token(token).expires_at

    @pytest.mark.parametrize(
        "token",
        [
            issue_token(OTHER_SECRET, "sbx", 1),
            "not.a.jwt",
            jwt.encode({"sandboxId": "sbx"}, SECRET, algorithm="HS256"),
            jwt.encode({"sandboxId": 5, "workspaceId": 1}, SECRET, algorithm="HS256"),
            jwt.encode(
                {"sandboxId": "s", "workspaceId": "1"}, SECRET, algorithm="HS256"
            ),
        ],
        ids=["forged", "garbage", "no-workspace", "int-sandbox", "str-workspace"],
    )
    def test_bad_tokens_are_refused(self, token: str) -> None:
        """Forged, malformed or incomplete tokens raise EventsAuthError."""
        with pytest.raises(EventsAuthError, match="Invalid access token"):
            Authenticator(SECRET, API_KEYS).verify_token(token)

    def test_api_keys_map_to_their_workspace(self) -> None:
        """A known key names its workspace; unknown and empty keys are refused."""
        auth = Authenticator(SECRET, API_KEYS)
        assert OTHER_WORKSPACE == auth.workspace_for_api_key(OTHER_API_KEY)
        with pytest.raises(EventsAuthError, match="Invalid API key"):
            auth.workspace_for_api_key("nope")
        with pytest.raises(EventsAuthError, match="Missing API key"):
            auth.workspace_for_api_key("")


class TestHttpAuth:
    """The HTTP API answers 401 envelopes for missing or bad credentials."""

    def test_expired_token_answers_401(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A token past its exp is refused and nothing is stored."""
        token = gateway.issue_token(SANDBOX, ttl=-10)
        assert_error(
            post_event(session, gateway, {"type": "a"}, token=token), 401, "expired"
        )
        assert [] == read(get_events(session, gateway))

    def test_forged_token_answers_401(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A token signed with another secret is refused."""
        token = issue_token(OTHER_SECRET, SANDBOX, 1)
        answer = post_event(session, gateway, {"type": "a"}, token=token)
        assert_error(answer, 401, "Invalid access token")

    @pytest.mark.parametrize(
        ("headers", "fragment"),
        [
            ({}, "Missing access token"),
            ({"Authorization": "Bearer "}, "Missing access token"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "must be 'Bearer <token>'"),
            ({"Authorization": "Bearer abc.def.ghi"}, "Invalid access token"),
        ],
    )
    def test_missing_or_malformed_token_answers_401(
        self,
        gateway: GatewayThread,
        session: requests.Session,
        headers: dict[str, str],
        fragment: str,
    ) -> None:
        """Without a usable bearer token, POST /events answers 401."""
        answer = session.post(
            f"{gateway.http_url}/events", json={"type": "a"}, headers=headers
        )
        assert_error(answer, 401, fragment)

    def test_bearer_scheme_is_case_insensitive(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """'bearer <token>' works like 'Bearer <token>'."""
        token = gateway.issue_token(SANDBOX)
        answer = session.post(
            f"{gateway.http_url}/events",
            json={"type": "a"},
            headers={"Authorization": f"bearer {token}"},
        )
        assert 200 == answer.status_code

    @pytest.mark.parametrize(
        ("headers", "fragment"),
        [({}, "Missing API key"), ({"X-API-Key": "wrong"}, "Invalid API key")],
    )
    def test_missing_or_unknown_api_key_answers_401(
        self,
        gateway: GatewayThread,
        session: requests.Session,
        headers: dict[str, str],
        fragment: str,
    ) -> None:
        """GET without a known API key answers 401."""
        answer = session.get(f"{gateway.http_url}/events/{SANDBOX}", headers=headers)
        assert_error(answer, 401, fragment)

    def test_auth_is_checked_before_the_query(
        self, gateway: GatewayThread, session: requests.Session
    ) -> None:
        """A bad API key with a bad limit answers 401, not 400."""
        answer = get_events(session, gateway, api_key="wrong", limit=0)
        assert_error(answer, 401, "Invalid API key")


class TestWorkspaceIsolation:
    """An API key reads its own workspace's sandboxes only."""

    def test_other_workspace_sees_nothing(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Workspace 2 reading a workspace-1 sandbox gets what an unknown one gets."""
        post_event(session, any_gateway, {"type": "secret", "data": {"k": 1}})
        mine = get_events(session, any_gateway, api_key=API_KEY)
        theirs = get_events(session, any_gateway, api_key=OTHER_API_KEY)
        unknown = get_events(session, any_gateway, "no-such-sandbox")
        assert 1 == len(read(mine))
        assert [] == read(theirs)
        assert unknown.json()["data"]["events"] == theirs.json()["data"]["events"]

    def test_same_sandbox_id_in_two_workspaces_stays_apart(
        self, any_gateway: GatewayThread, session: requests.Session
    ) -> None:
        """Two workspaces may use one sandbox id without seeing each other's events."""
        post_event(session, any_gateway, {"type": "one"})
        token = any_gateway.issue_token(SANDBOX, OTHER_WORKSPACE)
        post_event(session, any_gateway, {"type": "two"}, token=token)
        assert ["one"] == [e["type"] for e in read(get_events(session, any_gateway))]
        theirs = read(get_events(session, any_gateway, api_key=OTHER_API_KEY))
        assert [("two", OTHER_WORKSPACE)] == [
            (e["type"], e["workspaceId"]) for e in theirs
        ]

"""
Gateway authentication: HS256 access tokens for sandboxes, API keys for workspaces.

An access token is a JWT carrying ``sandboxId``, ``workspaceId`` and usually ``exp``;
it lets its holder store events for that one sandbox and subscribe to it. An API key
maps to one workspace and reads that workspace's sandboxes only.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import jwt

from ..errors import EventsAuthError
from ._tokens import (
    MAX_SANDBOX_ID_LENGTH,
    MAX_WORKSPACE_ID,
    check_workspace_id,
    issue_token,
)

__all__ = ["Authenticator", "TokenClaims"]

_ALGORITHM: Final = "HS256"
_CACHE_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified access token grants."""

    sandbox_id: str
    workspace_id: int
    expires_at: float | None
    """Unix time after which the token is refused; None for a token without ``exp``."""


class Authenticator:
    """
    Verifies access tokens and API keys; safe to share across one event loop.

    Verified tokens are cached (their expiry is still checked on every use), so a
    sandbox that sends thousands of events pays for one signature check.

    Args:
        secret: The HS256 signing secret.
        api_keys: API key -> workspace id.
        clock: Unix time in seconds; injectable for tests.

    Raises:
        ValueError: An empty secret, or an API key's workspace out of range.
    """

    def __init__(
        self,
        secret: str,
        api_keys: Mapping[str, int],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the gateway secret must not be empty")
        for key, workspace in api_keys.items():
            try:
                check_workspace_id(workspace)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"API key {key[:4]}...: {exc}") from None
        self._secret = secret
        self._api_keys = dict(api_keys)
        self._clock = clock
        self._cache: dict[str, TokenClaims] = {}

    def issue_token(
        self, sandbox_id: str, workspace_id: int, *, ttl: float | None = 3600.0
    ) -> str:
        """Return a token signed with this gateway's secret (see ``issue_token``)."""
        return issue_token(
            self._secret, sandbox_id, workspace_id, ttl=ttl, now=self._clock()
        )

    def verify_token(self, token: str) -> TokenClaims:
        """
        Return the claims of a valid, unexpired access token.

        Raises:
            EventsAuthError: Missing, malformed, forged or expired token.
        """
        if not token:
            raise EventsAuthError("Missing access token", 401)
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = claims
        if claims.expires_at is not None and self._clock() >= claims.expires_at:
            raise EventsAuthError("Access token has expired", 401)
        return claims

    def _decode(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                # Expiry is checked against our injectable clock in verify_token.
                options={"verify_exp": False, "require": ["sandboxId", "workspaceId"]},
            )
        except jwt.InvalidTokenError as exc:
            raise EventsAuthError(f"Invalid access token: {exc}", 401) from None
        sandbox_id = payload.get("sandboxId")
        workspace_id = payload.get("workspaceId")
        exp = payload.get("exp")
        if (
            not isinstance(sandbox_id, str)
            or not sandbox_id
            or len(sandbox_id) > MAX_SANDBOX_ID_LENGTH
        ):
            raise EventsAuthError("Invalid access token: bad sandboxId claim", 401)
        if (
            isinstance(workspace_id, bool)
            or not isinstance(workspace_id, int)
            or not 0 <= workspace_id <= MAX_WORKSPACE_ID
        ):
            raise EventsAuthError(
                "Invalid access token: the workspaceId claim must be an integer "
                f"from 0 to {MAX_WORKSPACE_ID}",
                401,
            )
        expires_at: float | None = None
        if exp is not None:
            if isinstance(exp, bool) or not isinstance(exp, (int, float)):
                raise EventsAuthError("Invalid access token: bad exp claim", 401)
            try:
                expires_at = float(exp)
            except OverflowError:  # an int too large for a float: never in range
                expires_at = math.nan
            if not math.isfinite(expires_at):
                raise EventsAuthError(
                    "Invalid access token: the exp claim must be a finite time", 401
                )
        return TokenClaims(sandbox_id, workspace_id, expires_at)

    def workspace_for_api_key(self, api_key: str) -> int:
        """
        Return the workspace an API key reads.

        Raises:
            EventsAuthError: Missing or unknown key.
        """
        if not api_key:
            raise EventsAuthError("Missing API key", 401)
        # Constant-time comparison against every key: no timing hint about valid keys.
        found: int | None = None
        for known, workspace in self._api_keys.items():
            if hmac.compare_digest(known.encode(), api_key.encode()):
                found = workspace
        if found is None:
            raise EventsAuthError("Invalid API key", 401)
        return found

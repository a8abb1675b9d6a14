"""
Minting access tokens, and finding a gateway's secret: the standard library only.

``cse-bridge token`` signs tokens on a core install (no PyJWT, no aiohttp); the
gateway verifies them with PyJWT (``_auth``). An access token is an HS256 JWT
(RFC 7519) carrying ``sandboxId``, ``workspaceId``, ``iat`` and usually ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "MAX_SANDBOX_ID_LENGTH",
    "MAX_WORKSPACE_ID",
    "MIN_SECRET_LENGTH",
    "check_sandbox_id",
    "check_workspace_id",
    "issue_token",
    "resolve_secret",
]

MAX_SANDBOX_ID_LENGTH: Final = 256
MAX_WORKSPACE_ID: Final = 2**53 - 1
"""Largest workspace id: every store keeps it (sqlite's INTEGER is 64-bit) and every
JSON reader, JavaScript's included, reads it back exactly."""
MIN_SECRET_LENGTH: Final = 32
"""Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2)."""
_HEADER: Final = {"alg": "HS256", "typ": "JWT"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _segment(value: Mapping[str, object]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def issue_token(
    secret: str,
    sandbox_id: str,
    workspace_id: int,
    *,
    ttl: float | None = 3600.0,
    now: float | None = None,
) -> str:
    """
    Return an HS256 access token for *sandbox_id* in *workspace_id*.

    Args:
        secret: The gateway's signing secret.
        sandbox_id: The sandbox the token names.
        workspace_id: The workspace the sandbox belongs to.
        ttl: Seconds until it expires; None for a token that never does.
        now: The issue time (Unix seconds); the current time by default.

    Raises:
        ValueError: An empty, too long or not UTF-8 sandbox id, a workspace id out of
            range (0 to ``MAX_WORKSPACE_ID``), or a ttl that is not finite.
        TypeError: A workspace id that is not an int.
    """
    check_sandbox_id(sandbox_id)
    check_workspace_id(workspace_id)
    if ttl is not None and not math.isfinite(ttl):
        raise ValueError(f"ttl must be a finite number of seconds: {ttl!r}")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "sandboxId": sandbox_id,
        "workspaceId": workspace_id,
        "iat": int(issued),
    }
    if ttl is not None:
        claims["exp"] = int(issued + ttl)
    signed = f"{_segment(_HEADER)}.{_segment(claims)}"
    mac = hmac.new(secret.encode(), signed.encode("ascii"), hashlib.sha256)
    return f"{signed}.{_b64(mac.digest())}"


def check_sandbox_id(sandbox_id: str) -> None:
    """
    Refuse a sandbox id no gateway accepts.

    Raises:
        ValueError: Empty, over 256 characters, or not encodable as UTF-8.
    """
    if not sandbox_id or len(sandbox_id) > MAX_SANDBOX_ID_LENGTH:
        raise ValueError(
            f"the sandbox id must be 1 to {MAX_SANDBOX_ID_LENGTH} characters"
        )
    try:
        sandbox_id.encode()
    except UnicodeEncodeError:
        raise ValueError("the sandbox id must be valid UTF-8 text") from None


def check_workspace_id(workspace_id: int) -> None:
    """
    Refuse a workspace id outside what every store and client can hold.

    Raises:
        TypeError: Not an int.
        ValueError: Outside 0 to ``MAX_WORKSPACE_ID``.
    """
    if isinstance(workspace_id, bool) or not isinstance(workspace_id, int):
        raise TypeError("workspace_id must be an int")
    if not 0 <= workspace_id <= MAX_WORKSPACE_ID:
        raise ValueError(
            f"the workspace id must be an integer from 0 to {MAX_WORKSPACE_ID}: "
            f"{workspace_id}"
        )


def resolve_secret(secret: str | None, store_url: str) -> tuple[str, bool]:
    """
    Return ``(secret, generated)`` for a gateway.

    A given secret must be at least ``MIN_SECRET_LENGTH`` bytes. Without one, an sqlite
    store keeps a generated secret in ``<database>.secret`` (mode 0600) so that issued
    tokens survive a restart; a memory store gets a fresh one each run.

    Raises:
        ValueError: The given secret is too short.
    """
    if secret is not None:
        if len(secret.encode()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"the gateway secret must be at least {MIN_SECRET_LENGTH} bytes "
                "(HS256, RFC 7518 section 3.2)"
            )
        return secret, False
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        path = Path(parts.path[1:] + ".secret")
        if path.exists():
            return path.read_text().strip(), True
        path.parent.mkdir(parents=True, exist_ok=True)
        generated = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generated + "\n")
        return generated, True
    return secrets.token_urlsafe(32), True

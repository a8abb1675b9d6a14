"""
The configuration both events clients share: resolved once, validated, replaceable.
"""

from __future__ import annotations

from .. import config
from ._validation import (
    DEFAULT_POOL_SIZE,
    check_credential,
    check_gateway_url,
    check_pool_size,
    check_timeout,
)

__all__ = ["ClientSettings"]


class ClientSettings:
    """
    Gateway URL, credentials, timeout, pool size and CA of an events client.

    The base of ``EventsClient`` and ``cse_bridge.aio.AsyncEventsClient``: each
    argument falls back to its ``COMPUTESDK_*`` environment variable, then to the
    default, and bad values raise here, before anything is sent. The credential
    setters replace one attribute at once, so a request reads either the old or the
    new value.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument (or the environment value it falls back to) is invalid.
    """

    def __init__(
        self,
        *,
        gateway_url: str | None = None,
        api_key: str | None = None,
        access_token: str | None = None,
        timeout: float | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        ca_file: str | None = None,
    ) -> None:
        checked_timeout = check_timeout(timeout)
        check_pool_size(pool_size)
        self._gateway_url = check_gateway_url(gateway_url)
        self._api_key = check_credential(config.resolve_api_key(api_key), "api_key")
        self._access_token = check_credential(
            config.resolve_access_token(access_token), "access_token"
        )
        self._timeout = checked_timeout
        self._pool_size = pool_size
        if ca_file is not None and not isinstance(ca_file, str):
            raise TypeError(f"ca_file must be a str, not {type(ca_file).__name__}")
        self._ca_file = config.resolve_ca_file(ca_file)

    @property
    def ca_file(self) -> str | None:
        """The CA bundle verifying an ``https`` gateway; None: the system's CAs."""
        return self._ca_file

    @property
    def gateway_url(self) -> str:
        """The gateway base URL, without a trailing slash."""
        return self._gateway_url

    @property
    def timeout(self) -> float:
        """Seconds allowed per connect and per read."""
        return self._timeout

    @property
    def pool_size(self) -> int:
        """Keep-alive connections kept to the gateway."""
        return self._pool_size

    @property
    def has_api_key(self) -> bool:
        """True when an API key is set (``get_events`` needs one)."""
        return self._api_key is not None

    @property
    def has_access_token(self) -> bool:
        """True when an access token is set (``store_event`` needs one)."""
        return self._access_token is not None

    def set_api_key(self, api_key: str | None) -> None:
        """
        Replace the API key used by ``get_events``; None or ``""`` removes it.

        Safe from any thread; requests already sent keep the key they were sent with.

        Raises:
            TypeError: *api_key* is not a str.
            ValueError: *api_key* contains line breaks or surrounding whitespace.
        """
        self._api_key = check_credential(api_key, "api_key")

    def set_access_token(self, access_token: str | None) -> None:
        """
        Replace the access token used by ``store_event``; None or ``""`` removes it.

        Safe from any thread; requests already sent keep the token they were sent with.

        Raises:
            TypeError: *access_token* is not a str.
            ValueError: *access_token* contains line breaks or surrounding whitespace.
        """
        self._access_token = check_credential(access_token, "access_token")

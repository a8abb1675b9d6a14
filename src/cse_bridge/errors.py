"""
The error hierarchy of the events API (docs/protocol.md#protocol-errors).

No exception class of this package is defined anywhere else.
"""

from __future__ import annotations

__all__ = [
    "EventsAuthError",
    "EventsError",
    "EventsNetworkError",
    "EventsPubSubError",
    "StoreUnavailableError",
]


class EventsError(Exception):
    """
    Base class of every error the events client and pub/sub client raise.

    Args:
        message: What went wrong; for a non-2xx answer, the server's body text.
        status_code: The HTTP status, when the error comes from an HTTP answer.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"
        )


class EventsAuthError(EventsError):
    """A 401 answer, or a token or API key missing before anything was sent."""


class EventsNetworkError(EventsError):
    """A timeout, a refused or reset connection: nothing usable came back."""


class EventsPubSubError(EventsError):
    """The pub/sub server answered ``-ERR``, refused the connection, or timed out."""


class StoreUnavailableError(EventsError):
    """
    The gateway's event store cannot be reached now (Redis down, failing over, busy).

    Raised by a gateway store, never by the client: the gateway answers ``503`` with
    ``Retry-After`` and tells pub/sub subscribers ``-ERR``. Transient by nature: the
    store reconnects by itself. The embedded stores never raise it.
    """

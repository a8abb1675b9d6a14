"""The error hierarchy of docs/protocol.md#protocol-errors (cse_bridge.errors)."""

from __future__ import annotations

import pickle

import pytest

from cse_bridge import (
    EventsAuthError,
    EventsError,
    EventsNetworkError,
    EventsPubSubError,
)

SUBCLASSES = [EventsAuthError, EventsNetworkError, EventsPubSubError]


class TestHierarchy:
    """Every error derives from EventsError, as in the official SDK."""

    @pytest.mark.parametrize("cls", SUBCLASSES)
    def test_subclass_of_events_error(self, cls: type[EventsError]) -> None:
        """Each specific error is caught by ``except EventsError``."""
        with pytest.raises(EventsError):
            raise cls("boom")

    def test_events_error_is_an_exception(self) -> None:
        """EventsError is a plain Exception, not a BaseException-only class."""
        assert issubclass(EventsError, Exception)

    @pytest.mark.parametrize("cls", SUBCLASSES)
    def test_siblings_are_distinct(self, cls: type[EventsError]) -> None:
        """No specific error is a subclass of another."""
        others = [other for other in SUBCLASSES if other is not cls]
        expected = [False] * len(others)
        assert expected == [issubclass(cls, other) for other in others]


class TestEventsError:
    """Message and status code."""

    def test_message_and_status(self) -> None:
        """The message is str(error) and .message; status_code is kept."""
        error = EventsError("Not found", 404)
        expected = ("Not found", "Not found", 404)
        assert expected == (str(error), error.message, error.status_code)

    def test_status_defaults_to_none(self) -> None:
        """Without an HTTP answer there is no status code."""
        assert None is EventsNetworkError("Request timeout").status_code

    @pytest.mark.parametrize("cls", [EventsError, *SUBCLASSES])
    def test_repr(self, cls: type[EventsError]) -> None:
        """repr names the class, the message and the status code."""
        expected = f"{cls.__name__}('bad', status_code=401)"
        assert expected == repr(cls("bad", 401))

    @pytest.mark.parametrize("cls", [EventsError, *SUBCLASSES])
    def test_pickle_round_trip(self, cls: type[EventsError]) -> None:
        """Errors survive pickling (e.g. across a process pool) with their fields."""
        error = pickle.loads(pickle.dumps(cls("bad", 500)))  # noqa: S301 - our own bytes
        expected = (cls, "bad", 500)
        assert expected == (type(error), error.message, error.status_code)

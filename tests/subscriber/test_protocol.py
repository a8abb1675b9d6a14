"""The sans-I/O rules both pub/sub clients follow (cse_bridge.subscriber.protocol)."""

from __future__ import annotations

import pytest

from cse_bridge.errors import EventsError, EventsPubSubError
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber.protocol import (
    BACKFILL_RETRY_CAP,
    ErrorReply,
    FrameReader,
    backfill_retry_delay,
    backfill_start,
    sort_frames,
    subscribe_answer,
    subscribe_command,
)

from .servers import event_json, message_frame


class TestSubscribeCommand:
    """What the clients write to subscribe."""

    def test_inline_when_the_arguments_allow(self) -> None:
        """Plain arguments go inline, as the official client sends them."""
        assert b"SUBSCRIBE sb-1 tok.en\r\n" == subscribe_command("sb-1", "tok.en")

    def test_multibulk_for_spaces(self) -> None:
        """An argument with a space is sent as RESP multibulk, intact."""
        reader = FrameReader()
        reader.feed(subscribe_command("sb 1", "t"))
        assert [[b"SUBSCRIBE", b"sb 1", b"t"]] == reader.frames()


class TestSubscribeAnswer:
    """Judging the first reply."""

    def test_ok_error_and_anything_else(self) -> None:
        """+OK is None, -ERR comes back as a value, anything else raises."""
        refused = ErrorReply("ERR Invalid token")
        assert (None, refused) == (
            subscribe_answer(b"OK", "h:1"),
            subscribe_answer(refused, "h:1"),
        )
        with pytest.raises(EventsPubSubError, match="h:1 answered"):
            subscribe_answer(b"HELLO", "h:1")


class TestSortFrames:
    """One read's frames split into events, errors, pongs and an ending error."""

    def test_everything_in_one_read(self) -> None:
        """Events keep their order; a bad push is an error; -ERR drops the rest."""
        reader = FrameReader()
        reader.feed(
            message_frame(event_json(1))
            + b"+PONG\r\n"
            + message_frame(b"not json")
            + message_frame(event_json(2))
            + b"-ERR source lost\r\n"
            + message_frame(event_json(3))
        )
        batch = sort_frames(reader.frames())
        assert (["evt_1", "evt_2"], 1, 1, "ERR source lost") == (
            [event.id for event in batch.events],
            len(batch.errors),
            batch.pongs,
            str(batch.ended),
        )


class TestBackfillRules:
    """When a (re)connect backfills, and how a failing backfill waits."""

    @pytest.mark.parametrize(
        ("last", "resumed", "history", "expected"),
        [
            (1000, False, False, (1000, False)),  # first connect, nothing asked
            (1000, False, True, (1000, True)),  # first connect with since=
            (1000, True, False, (1000, True)),  # every reconnect
        ],
    )
    def test_decision(
        self,
        last: int,
        resumed: bool,
        history: bool,
        expected: tuple[int, bool],
    ) -> None:
        """A reconnect always backfills; a first connect only for since=."""
        assert expected == backfill_start(last, resumed=resumed, history_wanted=history)

    def test_nothing_seen_starts_now(self) -> None:
        """Without a cursor, it starts at this connect and backfills only a resume."""
        first = backfill_start(None, resumed=False, history_wanted=False)
        again = backfill_start(None, resumed=True, history_wanted=False)
        assert (False, True, True) == (first[1], again[1], first[0] > 1_600_000_000_000)

    def test_retry_delay_doubles_jittered_and_capped(self) -> None:
        """1 s base: about 1, 2, 4 s, never above the cap, never below 3/4."""
        delays = [backfill_retry_delay(n, 1.0) for n in (1, 2, 3, 40)]
        assert [True] * 4 == [
            0.75 * bound <= delay <= bound
            for delay, bound in zip(delays, (1, 2, 4, BACKFILL_RETRY_CAP), strict=True)
        ]


class TestNextCursor:
    """The paging rule of iter_events and of the backfill."""

    @staticmethod
    def page(*timestamps: int) -> list[SandboxEvent]:
        """Events with these timestamps."""
        return [SandboxEvent(f"e{t}", "sb", 1, "custom", {}, t) for t in timestamps]

    def test_short_page_is_the_last(self) -> None:
        """A page shorter than the page size ends the paging; a full one moves on."""
        from cse_bridge.client.protocol import next_cursor

        assert (None, 12) == (
            next_cursor(self.page(11), 10, 2),
            next_cursor(self.page(11, 12), 10, 2),
        )

    def test_a_page_that_does_not_move_raises(self) -> None:
        """A full page ending at or before the cursor would loop: an error."""
        from cse_bridge.client.protocol import next_cursor

        with pytest.raises(EventsError, match="out of order"):
            next_cursor(self.page(9, 10), 10, 2)

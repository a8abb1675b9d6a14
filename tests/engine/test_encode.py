"""EventItem encoding: strict JSON, repr fallbacks, the size rule, packing."""

from __future__ import annotations

import json

from cse_bridge.engine import MAX_EVENT_BYTES, EventItem, encode_item
from cse_bridge.engine._encode import pack_events


class TestEncodeItem:
    """encode_item()."""

    def test_body_is_the_post_events_envelope(self) -> None:
        """The body is {"type", "data"} in compact JSON."""
        event = encode_item(EventItem("log.info", {"message": "hi"}))
        assert b'{"type":"log.info","data":{"message":"hi"}}' == event.body

    def test_non_json_values_become_strings(self) -> None:
        """NaN, sets, bytes, tuple keys and lone surrogates still give valid JSON."""
        data = {"n": float("nan"), "s": {1}, "b": b"x", (1, 2): 3, "u": "\ud800"}
        decoded = json.loads(encode_item(EventItem("log.info", data)).body)["data"]
        assert {
            "n": "nan",
            "s": "{1}",
            "b": "b'x'",
            "(1, 2)": 3,
            "u": "\ud800",
        } == decoded

    def test_long_string_is_cut_with_a_marker(self) -> None:
        """An over-limit message is cut to fit and data.truncated is set."""
        event = encode_item(EventItem("log.info", {"message": "é" * 2_000_000, "k": 1}))
        data = json.loads(event.body)["data"]
        assert (True, 1) == (data["truncated"], data["k"])
        assert len(event.body) <= MAX_EVENT_BYTES
        assert data["message"].endswith("[truncated] 2000000 chars")

    def test_many_small_values_are_replaced(self) -> None:
        """Without long strings, the largest attribute is replaced by a marker."""
        item = EventItem("log.info", {"attributes": {"big": list(range(400_000))}})
        data = json.loads(encode_item(item).body)["data"]
        assert data["attributes"]["big"].startswith("[truncated ")
        assert data["truncated"] is True


class TestPackEvents:
    """pack_events()."""

    def test_records_keep_type_and_data(self) -> None:
        """A log.batch carries each record's type and data, in order."""
        events = [
            encode_item(EventItem(f"log.{n}", {"i": n})) for n in ("info", "error")
        ]
        packed = pack_events(events)
        assert (
            2,
            {
                "records": [
                    {"type": "log.info", "data": {"i": "info"}},
                    {"type": "log.error", "data": {"i": "error"}},
                ]
            },
        ) == (packed.items, json.loads(packed.body)["data"])

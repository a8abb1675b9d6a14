"""
``LazyData``: event data built on first read, the base of ``LogRecordData`` and
``SpanData``.

The application thread keeps a cheap snapshot; the engine's worker reads the mapping
(or calls ``build()``, which its encoder looks for) and pays for building it there.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from json.encoder import encode_basestring

__all__ = ["LazyData", "json_value"]


class LazyData(Mapping[str, object]):
    """
    A read-only mapping whose dict is built by ``_build()`` on first access.

    Subclasses implement ``_build()`` and set ``self._data = None`` in ``__init__``.
    Built once, then shared; thread-safe (at worst two threads build it once each).
    """

    __slots__ = ("_data",)

    _data: dict[str, object] | None

    @abstractmethod
    def _build(self) -> dict[str, object]:
        """Return the event data as a new plain dict; called once, from ``build()``."""

    def build(self) -> dict[str, object]:
        """Return the event data as a plain dict (built once, then shared)."""
        data = self._data
        if data is None:
            data = self._data = self._build()
        return data

    def __getitem__(self, key: str) -> object:
        return self.build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.build())

    def __len__(self) -> int:
        return len(self.build())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.build()!r})"


_INF = float("inf")


def json_value(value: object, encode: Callable[[object], str]) -> str:
    """
    Return *value* as JSON text: str, int, None and finite floats inline.

    Anything else goes to *encode* (the engine's encoder), which raises for what
    JSON cannot carry, so the caller's fallback applies as for a dict.
    """
    kind = type(value)
    if kind is str:
        return encode_basestring(value)  # type: ignore[arg-type]  # checked: a str
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is float and -_INF < value < _INF:  # type: ignore[operator]  # checked: a float
        return float.__repr__(value)
    return encode(value)

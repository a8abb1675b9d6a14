"""
Producers: they snapshot a record on the caller's thread and submit it to the engine.

``logging`` (``EventsHandler``) needs nothing more than the core; ``structlog``
(``EventsProcessor``) needs the ``structlog`` extra. Import the submodule you use:
this package imports neither.
"""

from __future__ import annotations

__all__: list[str] = []

"""``__version__``: the installed distribution's version, in a module of its own."""

from __future__ import annotations

import importlib.metadata as _metadata

try:
    __version__ = _metadata.version("cse-bridge")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

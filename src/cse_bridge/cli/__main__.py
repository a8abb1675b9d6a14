"""``python -m cse_bridge.cli``: the same as ``cse-bridge``."""

from __future__ import annotations

from . import main

raise SystemExit(main())

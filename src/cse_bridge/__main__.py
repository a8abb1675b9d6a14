"""``python -m cse_bridge``: the ``cse-bridge`` command line."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())

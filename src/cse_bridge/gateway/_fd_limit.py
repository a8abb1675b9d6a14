"""
The file descriptor budget: raise the soft limit, keep connection caps under it.

Every open connection costs a descriptor. If both ports could fill the process's
limit, ``accept`` would fail for every newcomer, the HTTP API included; so the soft
limit is raised as far as the hard one allows, and the per-port cap is lowered to
fit two ports' worth under it with room to spare (as Redis lowers ``maxclients``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Final

__all__ = ["fit_connection_cap", "raise_open_file_limit"]

_RESERVED: Final = 64
"""Descriptors kept for everything but client connections: the listening sockets,
the store, Redis connections, logs, and refusals of connections over the cap."""
_NR_OPEN: Final = 1 << 20
"""Linux's default ceiling: a soft limit above it is refused even when the hard
limit says unlimited."""


def raise_open_file_limit() -> int | None:
    """
    Raise the soft ``RLIMIT_NOFILE`` toward the hard limit; return the soft limit.

    Returns None where the platform has no such limit. Never raises: a limit that
    cannot be raised stays as it is.
    """
    if sys.platform == "win32":  # no rlimits: the caps stand as configured
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NR_OPEN if hard == resource.RLIM_INFINITY else min(hard, _NR_OPEN)
    if soft != resource.RLIM_INFINITY and soft < target:
        # A container may forbid it: the limit then stays where it was.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def fit_connection_cap(requested: int, open_file_limit: int | None) -> int:
    """
    Return the per-port connection cap that both ports can reach at once.

    Two ports' worth plus a reserve (a tenth of the limit, at least 64) must fit
    under *open_file_limit*; None means no limit is known.
    """
    if open_file_limit is None:
        return requested
    reserve = max(_RESERVED, open_file_limit // 10)
    return max(1, min(requested, (open_file_limit - reserve) // 2))

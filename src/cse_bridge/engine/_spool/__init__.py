"""
The durable spool: events that cannot be sent now wait on disk, in segment files.

The story: the engine's worker hands events it would otherwise lose to its
``Spooler``, which appends them as checksummed frames (``_format``) to a segment it
created and locked (``_writer``) in the ``Spool`` directory (``_spool``). A later
engine (or the same one once the gateway answers) with a token for the same sandbox
claims the oldest unlocked segment (``_claim``), reads its frames (``_reader``,
which skips damage), sends them, records its progress in the segment's header, and
deletes the segment when every event in it was acknowledged. ``SpoolStatus``
(``_status``) is what ``cse-bridge spool status`` shows.

See docs/how-to/spool.md for the guarantees (at least once; what a crash loses).
"""

from __future__ import annotations

from ._claim import Claim
from ._spool import Spool, sandbox_key
from ._spooler import RESCAN_INTERVAL, RETRY_BROKEN, Spooler
from ._status import SpoolStatus

__all__ = [
    "RESCAN_INTERVAL",
    "RETRY_BROKEN",
    "Claim",
    "Spool",
    "SpoolStatus",
    "Spooler",
    "sandbox_key",
]

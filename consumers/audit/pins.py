"""
The checkpoint a verifier remembers: what stops a log, or an export of it, from shrinking or forking unseen.

A signed checkpoint proves a log of N leaves had a given root; it cannot
show that an export of fewer leaves, or of a log rewritten since, is not the
whole story.  So each successful ``safebus audit verify`` keeps the newest
checkpoint it verified, per log key, in ``<state>/audit-pins/<key id>.checkpoint``
(the signed note as published), and the next verification of that log must
cover it and extend it by a consistency proof (`verify._check_extends`).
A pin only moves forward: a smaller checkpoint never replaces a larger one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from safebus.checkpoint import Checkpoint, CheckpointError
from safebus.consumers.audit.ledger import LogIdentity

__all__ = [
    "CheckpointPins",
]


class CheckpointPins:
    """The newest verified checkpoint of each log key this machine has checked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, identity: LogIdentity) -> Path:
        """Where `identity`'s pin lives: named by a digest of its verifier key (origin and key together)."""
        return self.folder / f"{hashlib.sha256(identity.vkey.encode()).hexdigest()[:16]}.checkpoint"

    def load(self, identity: LogIdentity) -> str | None:
        """The pinned checkpoint note of `identity`'s log, if one was pinned."""
        try:
            return self.path(identity).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def advance(self, identity: LogIdentity, note: str, checkpoint: Checkpoint) -> bool:
        """Pin `note` (already verified as `checkpoint`) unless the pin covers at least as much; return if moved."""
        current = self.load(identity)
        if current is not None:
            try:
                if identity.open(current.encode()).size >= checkpoint.size:
                    return False
            except CheckpointError:
                pass  # a damaged pin is replaced by a verified checkpoint
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(identity)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(note, encoding="utf-8")
        os.replace(temporary, target)
        return True

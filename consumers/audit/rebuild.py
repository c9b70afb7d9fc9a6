"""
Rebuilding the audit ledger from the bus: the leaves topic, then the checkpoint topic, each record proven.

What a new host (or one whose disk was lost) runs before the sequencer
starts again.  The ledger it writes is the lost one row for row: every leaf
with the original receipt and time, every checkpoint with its note and the
time it was signed (`safebus.consumers.audit.leaf_records`).  Nothing is
taken on trust from the broker: each leaf must come next, hash to its body and
carry the log's receipt for its place; each checkpoint must be the log's
signature over the rebuilt tree at its size.  A leaf repeated on the topic (a
publish retried after a lost acknowledgement) is taken once, and refused if
the repeat differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from safebus.consumers.audit.leaf_records import leaf_from_record, signed_at
from safebus.consumers.audit.ledger import AuditLedger, Leaf, LedgerImportError
from safebus.records import Record

__all__ = ["RebuildReport", "rebuild"]


@dataclass(frozen=True, kw_only=True)
class RebuildReport:
    """What a rebuild took in."""

    leaves: int
    repeated: int
    """Leaf records seen again (identical) and taken once."""
    checkpoints: int
    unstamped: int
    """Checkpoints published without their signing time (before it was sent), stored with the rebuild's time."""
    root: bytes


def rebuild(ledger: AuditLedger, leaf_records: Iterable[Record], checkpoint_records: Iterable[Record], *,
            now: Callable[[], datetime], batch: int = 5000) -> RebuildReport:
    """
    Import every leaf record, then every checkpoint record, into the empty `ledger`.

    Raises `LedgerImportError` (or `safebus.consumers.audit.leaf_records.NotALeaf`) naming the first
    record that does not hold; what was imported before it stays, so the error says where the bus's
    copy of the log stops being the log.
    """
    if ledger.size:
        raise LedgerImportError(f"the ledger already holds {ledger.size} leaves: rebuild into an empty one")
    repeated = stored = 0
    pending: list[Leaf] = []  # read, not yet stored
    for record in leaf_records:
        leaf = leaf_from_record(record)
        if leaf.index < stored + len(pending):
            earlier = pending[leaf.index - stored] if leaf.index >= stored else ledger.leaf(leaf.index)
            if earlier != leaf:
                raise LedgerImportError(f"leaf {leaf.index} appears twice with different content "
                                        f"(offset {record.offset})")
            repeated += 1
            continue
        pending.append(leaf)  # out of place: refused by import_leaves, naming both indexes
        if len(pending) >= batch:
            stored += ledger.import_leaves(pending)
            pending = []
    ledger.import_leaves(pending)
    checkpoints = unstamped = 0
    for record in checkpoint_records:
        stamped = signed_at(record)
        unstamped += stamped is None
        ledger.import_checkpoint(record.value, created_at=stamped or now())
        checkpoints += 1
    return RebuildReport(leaves=ledger.size, repeated=repeated, checkpoints=checkpoints, unstamped=unstamped,
                         root=ledger.root())


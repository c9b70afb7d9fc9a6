"""
The integrity check a dashboard runs: verify the ledger as it stands, writing nothing.

Apart from the reader (`safebus.consumers.audit.reports`) because it is a
different job — cryptographic verification of the whole log, not a view of
the projection — and it must stay read-only: it builds export lines itself
rather than calling `export_lines`, which signs a checkpoint first, and hands
them to `safebus.consumers.audit.verify.verify_export` against the ledger's
own key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from safebus.b64 import std_b64e
from safebus.consumers.audit.ledger import AuditLedger, StoredCheckpoint
from safebus.consumers.audit.verify import EXPORT_FORMAT, Problem, verify_export
from safebus.logs import get_logger

__all__ = ["IntegrityStatus", "check_integrity"]

_log = get_logger("audit.reports")
"""The logger the check has always logged under, kept so log queries keep finding it."""


@dataclass(frozen=True, kw_only=True)
class IntegrityStatus:
    """Whether the ledger verified just now, and what was wrong if not (problems name leaf indexes)."""

    checked_at: datetime
    size: int
    checkpoint: StoredCheckpoint | None
    leaves_checked: int
    covered: int
    problems: tuple[Problem, ...]

    @property
    def verified(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    @property
    def first_bad_leaf(self) -> int | None:
        """The lowest leaf index a problem names."""
        named = [p.index for p in self.problems if p.index is not None]
        return min(named) if named else None


def _ledger_lines(ledger: AuditLedger, now: datetime) -> Iterator[str]:
    """The ledger in export form, as stored: no checkpoint is signed, nothing is written."""
    yield json.dumps({"format": EXPORT_FORMAT, "origin": ledger.identity.origin, "vkey": ledger.identity.vkey,
                      "exported_at": now.isoformat()})
    for leaf in ledger.leaves():
        fact: object
        try:
            fact = json.loads(leaf.body)
        except (ValueError, UnicodeDecodeError):
            fact = leaf.body.decode("utf-8", "replace")  # cannot hash as the original did: named by its index
        yield json.dumps({"index": leaf.index, "fact": fact, "receipt": std_b64e(leaf.receipt)},
                         ensure_ascii=False)
    for checkpoint in ledger.checkpoints():
        yield json.dumps({"checkpoint": checkpoint.note.decode()})


def check_integrity(ledger: AuditLedger, *, now: datetime) -> IntegrityStatus:
    """
    Verify every leaf's receipt, the tree, every checkpoint and their consistency, against the ledger's own key.

    Reads the whole log (O(n): a million leaves take minutes; run it off the
    request thread).
    """
    report = verify_export(_ledger_lines(ledger, now), pinned=ledger.identity, complete=False)
    status = IntegrityStatus(checked_at=now, size=ledger.size, checkpoint=ledger.latest_checkpoint(),
                             leaves_checked=report.leaves, covered=report.covered, problems=tuple(report.problems))
    _log.info("audit_integrity_checked", leaves=report.leaves, problems=len(report.problems),
              first_bad_leaf=status.first_bad_leaf)
    return status

"""
``safebus audit backup`` / ``restore``: a copy of this machine's ledger taken while the sequencer runs, and put back.

A backup is the ledger file itself, copied page by page with SQLite's online backup (consistent even while the
sequencer appends) and checked before it is kept: its newest checkpoint must be the log's signature over the
copied tree.  It holds no key: ``log-key.pem`` is backed up apart, with the partnership's root key
(docs/operations.md §6).

A restore trusts the backup file no more than a rebuild trusts the bus: every leaf is imported through the
ledger's own checks (its place, its hash, the log's receipt) and every checkpoint against the tree at its size,
into a file beside the ledger's place, moved there only when all of it holds.  It never merges into a ledger
that holds leaves.  What the log gained after the backup is on the bus: a sequencer started on the restored
ledger takes it in from the leaves topic before it sequences anything (ADR 0017), so ``audit verify`` then
passes on the whole log.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from safebus.app.cli_audit_rebuild import EXIT_REFUSED, empty_beside, log_identity
from safebus.checkpoint import CheckpointError
from safebus.consumers.audit.ledger import AuditLedger, Leaf, LedgerImportError, LogIdentity
from safebus.errors import ConfigError

if TYPE_CHECKING:
    from safebus.app.wiring import Settings

__all__ = ["backup_ledger", "restore_ledger"]

_BATCH = 5000


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise ConfigError(f"no ledger at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def backup_ledger(settings: Settings, file: Path, *, out: TextIO, err: TextIO) -> int:
    """Copy this machine's ledger to `file` (which must not exist) and check the copy; 0 when it holds."""
    if file.exists():
        raise ConfigError(f"{file} already exists: a backup never overwrites another")
    source = _read_only(settings.audit_dir / "ledger.sqlite")
    partial = file.with_name(file.name + ".partial")
    partial.unlink(missing_ok=True)
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    identity = log_identity(settings, None)
    try:
        size, checkpoint = _check(partial, identity)
    except (CheckpointError, LedgerImportError) as exc:
        print(f"safebus: audit backup refused: the copy does not hold ({exc}); kept at {partial}", file=err)
        return EXIT_REFUSED
    os.replace(partial, file)
    print(f"backed up {size} leaves to {file} (newest checkpoint: {checkpoint} leaves); the log key is not in it",
          file=out)
    return 0


def _check(path: Path, identity: LogIdentity) -> tuple[int, int]:
    """(leaves, size of the newest checkpoint) of a ledger copy whose newest checkpoint is its tree's."""
    ledger = AuditLedger(path, None, identity=identity)
    try:
        latest = ledger.latest_checkpoint()
        if latest is None:
            return ledger.size, 0
        opened = identity.open(latest.note)
        if opened.root_hash != ledger.root(opened.size):
            raise LedgerImportError(f"its checkpoint of {opened.size} leaves is not the copied tree's")
        return ledger.size, opened.size
    finally:
        ledger.close()


def _leaves(db: sqlite3.Connection) -> Iterator[Leaf]:
    rows = db.execute("SELECT idx, fact_id, fact_type, body, leaf_hash, receipt, appended_at FROM leaves "
                      "ORDER BY idx")
    for idx, fact_id, fact_type, body, hashed, receipt, appended_at in rows:
        if not all(isinstance(value, bytes) for value in (body, hashed, receipt)):
            raise LedgerImportError(f"leaf {idx}: not stored as a ledger stores it (edited by hand?)")
        yield Leaf(index=idx, fact_id=fact_id, fact_type=fact_type, body=bytes(body), leaf_hash=bytes(hashed),
                   receipt=bytes(receipt), appended_at=datetime.fromisoformat(appended_at))


def restore_ledger(settings: Settings, file: Path, *, vkey: str | None, into: Path | None, out: TextIO,
                   err: TextIO) -> int:
    """Restore the backup `file` to `into` (default: this machine's ledger, which must hold no leaves)."""
    target = into or settings.audit_dir / "ledger.sqlite"
    identity = log_identity(settings, vkey)
    partial = empty_beside(target, identity, doing="restore")
    backup = _read_only(file)
    ledger = AuditLedger(partial, None, identity=identity)
    try:  # the backup is read inside: a row it holds that is no leaf is a refusal like any other
        batch: list[Leaf] = []
        for leaf in _leaves(backup):
            batch.append(leaf)
            if len(batch) >= _BATCH:
                ledger.import_leaves(batch)
                batch = []
        ledger.import_leaves(batch)
        checkpoints = 0
        for note, created_at in backup.execute("SELECT note, created_at FROM checkpoints ORDER BY size"):
            ledger.import_checkpoint(bytes(note), created_at=datetime.fromisoformat(created_at))
            checkpoints += 1
        size, root = ledger.size, ledger.root()
    except LedgerImportError as exc:
        print(f"safebus: audit restore refused: {exc}", file=err)
        print(f"(the partial restore is kept at {partial} for investigation; {target} is untouched)", file=err)
        return EXIT_REFUSED
    finally:
        ledger.close()
        backup.close()
    os.replace(partial, target)
    print(f"restored {target}: {size} leaves, {checkpoints} checkpoints, root {root.hex()}; the sequencer takes "
          "in what the bus holds beyond them when it starts", file=out)
    return 0

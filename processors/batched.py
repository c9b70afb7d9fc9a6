"""
One SQLite commit per Faust batch instead of one per event.

The router's replay guard and state were committing (and so fsyncing) once
per event, which made the full rule set fsync-bound (bench/README.md).  Inside
`BatchedCommits.batch()` every write joins one transaction that commits when
the batch's outputs are durable; outside it, each write commits at once as
before (tests, tools).

Why this is safe: every write is idempotent (insert-or-ignore, newest-wins,
max).  If the process dies before the commit, the batch's offsets were not
committed either, the events are redelivered from the same offsets, and
processing them again gives the same outputs (deterministic ids) and the same
writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BatchedCommits"]


class BatchedCommits:
    """Mixin for a store over one SQLite connection (`self._db`) that can defer commits to the end of a batch."""

    _db: sqlite3.Connection
    _batched: bool = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write: committed now, or with the batch if one is open."""
        if self._batched:
            yield self._db
            return
        with self._db:
            yield self._db

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Join every write until the block ends into one transaction (rolled back if the block fails)."""
        if self._batched:
            yield
            return
        self._batched = True
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        else:
            self._db.commit()
        finally:
            self._batched = False

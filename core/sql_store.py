"""
One store's database connection: opened where its location says, at its schema's current version, shared by threads.

Every consumer store (the school inbox, the referral queues, the deadline
monitor) had the same few lines around `sqlite3`: open, create the tables,
one connection under a lock, commit or roll back.  `Database` is those lines
once, for either engine (`safebus.sql_dialects`), with the two things a
server adds: the schema is brought up to date by its migrations
(`safebus.migrations`), and a connection lost to a server restart is
replaced at the next transaction (the one that met it fails; every write is
in a transaction, so nothing is half-done).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safebus.logs import get_logger
from safebus.migrations import Schema, ensure_current
from safebus.sql_dialects import Dialect, RewritingCursor, dialect_for

__all__ = ["Database"]

_log = get_logger("sql_store")


class Database:
    """
    The database of one store at `location` (a path, ``sqlite:///…`` or ``postgresql://…``; None: in memory).

    Thread-safe: one connection, each transaction under a re-entrant lock;
    a transaction opened inside another joins it.
    """

    def __init__(self, location: Path | str | None, schema: Schema) -> None:
        """Connect and bring the schema to its current version (raises ConfigError for a bad location)."""
        self.dialect: Dialect = dialect_for(location)
        self.schema = schema
        self._lock = threading.RLock()
        self._depth = 0
        self._connection = self.dialect.connect()
        try:
            ensure_current(self.dialect, self._connection, schema)
        except BaseException:
            self._connection.close()
            raise

    @contextmanager
    def transaction(self, *, exclusive: str | None = None) -> Iterator[RewritingCursor]:
        """
        A cursor whose statements commit together when the block ends, or roll back if it raises.

        `exclusive` names a table no other connection may write until this
        transaction ends (SQLite: the whole file, ``BEGIN IMMEDIATE``): for a
        read-then-write that must not interleave with another process's.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield RewritingCursor(self._connection.cursor(), self.dialect)
                finally:
                    self._depth -= 1
                return
            if self.dialect.lost(self._connection):
                _log.warning("sql_store.reconnecting", store=self.schema.store, engine=self.dialect.name)
                self._connection = self.dialect.connect()
            cursor = RewritingCursor(self._connection.cursor(), self.dialect)
            self._depth = 1
            try:
                if exclusive is not None:
                    cursor.execute(self.dialect.exclusive(exclusive))
                yield cursor
            except BaseException:
                self._connection.rollback()
                raise
            else:
                self._connection.commit()
            finally:
                self._depth = 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

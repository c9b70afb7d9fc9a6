"""
The dialect seam: everything that differs between the SQL engines the projection runs on.

How to connect, the driver's parameter style, the 64-bit integer type, how
to tell a lost connection, and the cleaning of text neither engine can
store, so the store itself is written once in portable SQL.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from safebus.consumers.audit.projection.results import QueryError

__all__ = [
    "Dialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters some engine or UTF-8 cannot store: NUL (PostgreSQL's text) and lone surrogates (any UTF-8)."""



class _Cursor(Protocol):
    """The part of a DB-API 2.0 cursor used here."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> object:
        """Run one statement."""

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""

    def fetchone(self) -> Any:
        """The next row, or None."""


class _Connection(Protocol):
    """The part of a DB-API 2.0 connection used here."""

    def cursor(self) -> Any:
        """A new cursor."""

    def commit(self) -> None:
        """Commit the open transaction."""

    def rollback(self) -> None:
        """Roll the open transaction back."""

    def close(self) -> None:
        """Close the connection."""


class Dialect(Protocol):
    """
    Everything that differs between the SQL engines the projection runs on.

    Statements are written once with ``?`` placeholders and portable SQL;
    `sql` rewrites them for the driver.  A new engine needs one class, and a
    run of ``tests/integration/test_audit_projection_postgresql.py``'s
    comparison against SQLite.
    """

    @property
    def name(self) -> str:
        """The engine's name (``sqlite``, ``postgresql``)."""

    @property
    def integer(self) -> str:
        """The column type of a 64-bit integer."""

    def connect(self) -> _Connection:
        """A new connection in a mode where `commit` ends each transaction."""

    def sql(self, statement: str) -> str:
        """`statement` with its ``?`` placeholders in the driver's parameter style."""

    def lost(self, connection: _Connection) -> bool:
        """Whether `connection` can no longer be used (its server restarted, the network dropped): reconnect."""


@dataclass(frozen=True)
class SQLiteDialect:
    """SQLite through the standard library: the default, one file next to the ledger."""

    path: Path
    name: str = "sqlite"
    integer: str = "INTEGER"

    def connect(self) -> _Connection:
        """Open the file (WAL: readers never block the projector), creating its folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return cast(_Connection, connection)

    def sql(self, statement: str) -> str:
        """SQLite takes ``?`` (qmark) as it is."""
        return statement

    def lost(self, connection: _Connection) -> bool:
        """A file is never lost the way a server connection is."""
        return False


@dataclass(frozen=True)
class PostgreSQLDialect:
    """
    PostgreSQL through psycopg 3 (``pip install 'psycopg[binary]'``), tested against PostgreSQL 15 in CI.

    Selected by configuration (`AuditProjection.from_url`) where several
    dashboards share one projection.  Its answers are tested to equal the
    SQLite dialect's, on a server whose collation is not byte order.
    `connect` raises QueryError, saying what to install, if psycopg is
    missing (it is an optional dependency: SQLite needs nothing).
    """

    dsn: str
    name: str = "postgresql"
    integer: str = "BIGINT"

    def connect(self) -> _Connection:
        """Open a connection (psycopg's default: a transaction per `commit`)."""
        try:
            psycopg = importlib.import_module("psycopg")
        except ImportError as exc:
            raise QueryError("the PostgreSQL projection needs psycopg: pip install 'psycopg[binary]'") from exc
        return cast(_Connection, psycopg.connect(self.dsn))

    def sql(self, statement: str) -> str:
        """psycopg takes ``%s`` (format); our statements hold no literal ``%`` or ``?``."""
        assert "%" not in statement
        return statement.replace("?", "%s")

    def lost(self, connection: _Connection) -> bool:
        """psycopg marks a connection closed once it has seen it break (``closed`` is psycopg's attribute)."""
        return bool(getattr(connection, "closed", False))


def _storable(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """`parameters` with every `_UNSTORABLE` character in text replaced by U+FFFD, the same for every engine."""
    return tuple(_UNSTORABLE.sub("\ufffd", p) if isinstance(p, str) else p for p in parameters)


@dataclass
class _Rewriting:
    """
    A cursor that rewrites ``?`` placeholders for the dialect's driver and makes text storable.

    Every value written or searched for passes here, so cleaning text once
    keeps the engines in agreement: a filter holding NUL finds what the same
    cleaned text was stored as, instead of failing on PostgreSQL only.
    """

    cursor: Any
    dialect: Dialect

    def execute(self, sql: str, parameters: Sequence[Any], /) -> object:
        """Run one statement."""
        return self.cursor.execute(self.dialect.sql(sql), _storable(parameters))

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""
        rows = [_storable(p) for p in seq_of_parameters]
        return self.cursor.executemany(self.dialect.sql(sql), rows) if rows else None

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return list(self.cursor.fetchall())

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self.cursor.fetchone()

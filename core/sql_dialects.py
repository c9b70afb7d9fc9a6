"""
The dialect seam: everything that differs between the SQL engines safebus stores run on.

How to connect, the driver's parameter style, the column types that are
spelt differently, how to tell a lost connection and how to make writers
queue, and the cleaning of text neither engine can store, so each store is
written once in portable SQL.  The audit projection was the first user; the
consumers' stores (inbox, queues, deadline monitor) share it, which is why it
lives in the kernel: a stage may import the kernel, never another stage.

A store is chosen by a *location* (`dialect_for`): a `Path`, a bare path or
``sqlite:///path`` keeps the SQLite file every store has always used;
``postgresql://…`` selects a PostgreSQL database that several hosts can share.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from safebus.errors import ConfigError

__all__ = [
    "Connection",
    "Cursor",
    "Dialect",
    "PostgreSQLDialect",
    "RewritingCursor",
    "SQLiteDialect",
    "dialect_for",
    "location_text",
]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters some engine or UTF-8 cannot store: NUL (PostgreSQL's text) and lone surrogates (any UTF-8)."""

_POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite:///"


class Cursor(Protocol):
    """The part of a DB-API 2.0 cursor the stores use; `execute` returns the cursor, as sqlite3's does."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed (summed over `executemany`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor:
        """Run one statement for each parameter row."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""

    def fetchone(self) -> Any:
        """The next row, or None."""


class Connection(Protocol):
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
    Everything that differs between the SQL engines the stores run on.

    Statements are written once with ``?`` placeholders and portable SQL
    (``INSERT … ON CONFLICT … DO NOTHING`` rather than ``INSERT OR IGNORE``);
    `sql` rewrites them for the driver.  A new engine needs one class, its
    migrations folder, and a run of the two-engine integration tests.
    """

    @property
    def name(self) -> str:
        """The engine's name (``sqlite``, ``postgresql``): also the name of its migrations folder."""

    @property
    def integer(self) -> str:
        """The column type of a 64-bit integer."""

    def connect(self) -> Connection:
        """A new connection in a mode where `commit` ends each transaction."""

    def sql(self, statement: str) -> str:
        """`statement` with its ``?`` placeholders in the driver's parameter style."""

    def lost(self, connection: Connection) -> bool:
        """Whether `connection` can no longer be used (its server restarted, the network dropped): reconnect."""

    def exclusive(self, table: str) -> str:
        """The statement that opens a transaction in which no other connection writes `table` until it ends."""

    def describe(self) -> str:
        """Where the database is, for messages and logs, without any password."""


@dataclass(frozen=True)
class SQLiteDialect:
    """
    SQLite through the standard library: the default, one file per store beside the others.

    `path` None is a private in-memory database (tests, and web apps run
    without a state directory); it lives as long as its one connection.
    """

    path: Path | None
    durable: bool = True
    """Sync every commit to disk (``synchronous=FULL``); False for a store that can be rebuilt (the projection)."""
    name: str = "sqlite"
    integer: str = "INTEGER"
    timeout_s: float = 30.0

    def connect(self) -> Connection:
        """Open the file (WAL: readers never block the writer), creating its folder."""
        if self.path is None:
            return cast(Connection, sqlite3.connect(":memory:", check_same_thread=False))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        return cast(Connection, connection)

    def sql(self, statement: str) -> str:
        """SQLite takes ``?`` (qmark) as it is."""
        return statement

    def lost(self, connection: Connection) -> bool:
        """A file is never lost the way a server connection is."""
        return False

    def exclusive(self, table: str) -> str:
        """SQLite locks the whole file: ``BEGIN IMMEDIATE`` takes the write lock at once, across processes."""
        return "BEGIN IMMEDIATE"

    def describe(self) -> str:
        """The file's path (or ``:memory:``)."""
        return ":memory:" if self.path is None else str(self.path)


@dataclass(frozen=True)
class PostgreSQLDialect:
    """
    PostgreSQL through psycopg 3 (``pip install 'psycopg[binary]'``), tested against Debian's PostgreSQL.

    Selected by configuration where several hosts share one store.  Its
    answers are tested to equal the SQLite dialect's.  `connect` raises
    ConfigError, saying what to install, if psycopg is missing (SQLite needs
    nothing, so it stays an optional dependency).
    """

    dsn: str
    name: str = "postgresql"
    integer: str = "BIGINT"

    def connect(self) -> Connection:
        """Open a connection (psycopg's default: a transaction per `commit`)."""
        try:
            psycopg = importlib.import_module("psycopg")
        except ImportError as exc:
            raise ConfigError("a PostgreSQL store needs psycopg: pip install 'psycopg[binary]'") from exc
        return cast(Connection, psycopg.connect(self.dsn))

    def sql(self, statement: str) -> str:
        """psycopg takes ``%s`` (format); our statements hold no literal ``%`` or ``?``."""
        assert "%" not in statement
        return statement.replace("?", "%s")

    def lost(self, connection: Connection) -> bool:
        """psycopg marks a connection closed once it has seen it break (``closed`` is psycopg's attribute)."""
        return bool(getattr(connection, "closed", False))

    def exclusive(self, table: str) -> str:
        """A table lock that conflicts with itself and with every write, taken in the transaction psycopg opened."""
        assert re.fullmatch(r"[a-z_]+", table)
        return f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"

    def describe(self) -> str:
        """The URL with any password masked."""
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.dsn)


def dialect_for(location: Path | str | None) -> Dialect:
    """
    The engine a store's location names.

    A `Path` or a bare path (no scheme) is a SQLite file, as every store has
    always been opened; ``sqlite:///relative`` and ``sqlite:////absolute``
    name one too; ``postgresql://…`` (or ``postgres://…``) is a PostgreSQL
    database, its libpq URL passed on as it is; None is SQLite in memory.
    Raises ConfigError for any other scheme.
    """
    if location is None or isinstance(location, Path):
        return SQLiteDialect(location)
    if location.startswith(_POSTGRESQL_SCHEMES):
        return PostgreSQLDialect(location)
    if location.startswith(_SQLITE_SCHEME):
        return SQLiteDialect(Path(location.removeprefix(_SQLITE_SCHEME)))
    if "://" in location:
        raise ConfigError(f"a store's location must be a path, sqlite:///path or postgresql://…, not {location[:40]!r}")
    return SQLiteDialect(Path(location))


def location_text(location: Path | str | None) -> str:
    """`location` as a user would write it, with any password masked (for messages)."""
    return dialect_for(location).describe()


def _storable(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """`parameters` with every `_UNSTORABLE` character in text replaced by U+FFFD, the same for every engine."""
    return tuple(_UNSTORABLE.sub("\ufffd", p) if isinstance(p, str) else p for p in parameters)


@dataclass
class RewritingCursor:
    """
    A cursor that rewrites ``?`` placeholders for the dialect's driver and makes text storable.

    Every value written or searched for passes here, so cleaning text once
    keeps the engines in agreement: a filter holding NUL finds what the same
    cleaned text was stored as, instead of failing on PostgreSQL only.
    """

    cursor: Any
    dialect: Dialect
    _rowcount: int = -1

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed (summed over `executemany`; 0 after one given no rows)."""
        return self._rowcount

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> RewritingCursor:
        """Run one statement."""
        self.cursor.execute(self.dialect.sql(sql), _storable(parameters))
        self._rowcount = int(self.cursor.rowcount)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> RewritingCursor:
        """Run one statement for each parameter row (nothing at all for no rows)."""
        rows = [_storable(p) for p in seq_of_parameters]
        self._rowcount = 0
        if rows:
            self.cursor.executemany(self.dialect.sql(sql), rows)
            self._rowcount = int(self.cursor.rowcount)
        return self

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return list(self.cursor.fetchall())

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self.cursor.fetchone()

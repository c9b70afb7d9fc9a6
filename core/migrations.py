"""
Schema versions of the stores: each store's migrations, applied with yoyo-migrations on SQLite or PostgreSQL.

Until stores could be shared, each one created its tables on open (``CREATE
TABLE IF NOT EXISTS``) and added any column a later release introduced; that
cannot say which version a database is at, and a shared PostgreSQL database
needs its changes applied once, in order, by whichever host gets there first.
So each store now has numbered migrations (docs/adr/0016):

- **One folder per engine, one file prefix per store.**  A `Schema` names its
  store (``inbox``) and a folder holding ``sqlite/`` and ``postgresql/``; its
  migrations are the ``<store>-NNNN-<what>.sql`` files there.  The two
  engines spell some types differently (``BLOB``/``BYTEA``, ``REAL``/``DOUBLE
  PRECISION``), so each engine has its own file under the same id, and a test
  keeps the two folders' ids equal.  Ids are unique across stores, so every
  store can live in one PostgreSQL database, or each in its own file.
- **yoyo records what is applied** (its ``_yoyo_migration`` table) and takes
  a lock (``yoyo_lock``) while applying, so two hosts starting together apply
  each migration once; `upgrade` is idempotent.
- **The baseline is today's schema.**  Migration 0001 of each store is the
  schema the store created on open before migrations existed, still with
  ``IF NOT EXISTS``, so on a file the older code made it changes nothing and
  is recorded as applied.  Such a file may predate a column that the old code
  added on open (`Schema.legacy_columns`); before the baseline is recorded
  those are added as the old code did, so every file reaches the same shape.
  A PostgreSQL store never existed before migrations, so this is SQLite's alone.
- **Stores migrate themselves on open** (`ensure_current`), so nothing needs
  an extra step; ``safebus db upgrade`` does the same ahead of time, and
  ``safebus db status`` says what is applied where.  Checking costs one query
  when nothing is pending.

yoyo ships no type hints (pyproject lets mypy take it as untyped); it is used here and nowhere else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoyo import get_backend, read_migrations
from yoyo.backends import SQLiteBackend
from yoyo.connections import DatabaseURI

from safebus.errors import ConfigError, SafebusError
from safebus.logs import get_logger
from safebus.sql_dialects import Connection, Dialect, PostgreSQLDialect, SQLiteDialect, dialect_for

__all__ = ["MIGRATION_TABLE", "MigrationError", "Schema", "Status", "ensure_current", "status", "upgrade"]

_log = get_logger("migrations")

MIGRATION_TABLE = "_yoyo_migration"
"""Where yoyo records the migrations applied (its default name, so yoyo's own command line agrees)."""

_LOCK_TIMEOUT_S = 60
"""How long a host waits for another that is applying migrations (yoyo's lock) before it gives up."""


class MigrationError(SafebusError):
    """A store's schema could not be read or brought up to date: the database could not be reached, or refused."""


@dataclass(frozen=True)
class Schema:
    """
    A store's schema versions: the store's name and where its migrations are.

    `legacy_columns` maps a table to the columns (``"name TYPE"``) that a
    release before migrations added on open, for files that predate them.
    """

    store: str
    folder: Path
    legacy_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def directory(self, dialect: Dialect) -> Path:
        """The folder of this engine's migrations."""
        return self.folder / dialect.name

    def ids(self, dialect: Dialect) -> tuple[str, ...]:
        """This store's migration ids on `dialect`'s engine, in order (file names without ``.sql``)."""
        return tuple(sorted(p.stem for p in self.directory(dialect).glob(f"{self.store}-*.sql")))


@dataclass(frozen=True, kw_only=True)
class Status:
    """Which of a store's migrations a database has, and which it lacks."""

    store: str
    location: str
    applied: tuple[str, ...]
    pending: tuple[str, ...]

    @property
    def current(self) -> bool:
        """Whether nothing is pending."""
        return not self.pending


class _SQLiteFile(SQLiteBackend):  # type: ignore[misc]
    """
    yoyo's SQLite backend, opening the path as a path (or using a connection it is given).

    yoyo's own opens ``file:<path>?cache=shared`` as a URI, which misreads a
    path holding ``?``, ``#`` or ``%``; and an in-memory database exists only
    on the one connection that made it.
    """

    def __init__(self, dburi: Any, migration_table: str, given: Connection | None = None) -> None:
        self._given = given
        super().__init__(dburi, migration_table)

    def connect(self, dburi: Any) -> Any:
        """The given connection, or a new one on the file in autocommit mode (yoyo begins its own transactions)."""
        if self._given is not None:
            return self._given
        connection = sqlite3.connect(dburi.database, timeout=30, detect_types=sqlite3.PARSE_DECLTYPES)
        connection.isolation_level = None
        return connection

    def copy(self) -> _SQLiteFile:
        """Another backend on the same database (yoyo applies each migration on one): on the given connection too."""
        return _SQLiteFile(self.uri, self.migration_table, self._given)

    def __exit__(self, *exc: object) -> None:
        """Close the connection, unless it was given (then it is its owner's)."""
        if self._given is None:
            super().__exit__(*exc)
        else:  # what SQLiteBackend.__exit__ does besides closing: put back the driver's converters
            self.driver.converters = self._saved_converters
            self.driver.adapters = self._saved_adapters


def _sqlite_uri(path: str) -> Any:
    return DatabaseURI("sqlite", None, None, None, None, path, {})


@contextmanager
def _backend(dialect: Dialect, given: Connection | None = None) -> Iterator[Any]:
    """A yoyo backend on `dialect`'s database (closed afterwards unless it uses `given`)."""
    saved_isolation: Any = None  # typeshed reads isolation_level as str, writes it as a Literal
    if isinstance(dialect, SQLiteDialect):
        if dialect.path is not None:
            dialect.path.parent.mkdir(parents=True, exist_ok=True)
        elif isinstance(given, sqlite3.Connection):  # yoyo begins its own transactions: autocommit meanwhile
            saved_isolation, given.isolation_level = given.isolation_level, None
        backend = _SQLiteFile(_sqlite_uri(dialect.describe()), MIGRATION_TABLE, given if dialect.path is None else None)
        backend.init_database()
    elif isinstance(dialect, PostgreSQLDialect):
        scheme, rest = dialect.dsn.split("://", 1)
        del scheme
        backend = get_backend(f"postgresql+psycopg://{rest}", MIGRATION_TABLE)
    else:
        raise ConfigError(f"no migrations for the {dialect.name} engine")
    try:
        yield backend
    finally:
        if not _in_memory(dialect):  # an in-memory database's connection is its owner's to close
            backend.connection.close()
        elif isinstance(given, sqlite3.Connection):
            given.isolation_level = saved_isolation


def _in_memory(dialect: Dialect) -> bool:
    return isinstance(dialect, SQLiteDialect) and dialect.path is None


def _migrations(schema: Schema, dialect: Dialect) -> Any:
    folder = schema.directory(dialect)
    if not folder.is_dir():
        raise ConfigError(f"no {dialect.name} migrations for the {schema.store} store in {folder}")
    prefix = f"{schema.store}-"
    return read_migrations(str(folder)).filter(lambda m: m.id.startswith(prefix))


def _applied(backend: Any, migrations: Any) -> set[str]:
    hashes = set(backend.get_applied_migration_hashes())
    return {m.id for m in migrations if m.hash in hashes}


def _add_legacy_columns(backend: Any, schema: Schema) -> list[str]:
    """Add the columns an older release added on open, to the tables of a file that predates migrations."""
    added = []
    for table, columns in schema.legacy_columns.items():
        present = {row[1] for row in backend.execute(f"PRAGMA table_info({table})").fetchall()}
        if not present:
            continue  # no such table yet: the baseline creates it whole
        for column in columns:
            if column.split()[0] not in present:
                backend.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                added.append(f"{table}.{column.split()[0]}")
    return added


def upgrade(location: Path | str | None, schema: Schema, *, connection: Connection | None = None) -> list[str]:
    """
    Bring the store at `location` to its current version; return the ids of the migrations applied now.

    Idempotent: a database already current gets nothing (an empty list).
    `connection` is needed only for an in-memory SQLite database (None),
    which exists on that connection alone.  Raises ConfigError for an
    unknown engine or a missing migrations folder, MigrationError when the
    database cannot be reached or refuses a migration (nothing of that
    migration is applied: each runs in a transaction).
    """
    return _upgrade(dialect_for(location), schema, connection)


def _upgrade(dialect: Dialect, schema: Schema, connection: Connection | None) -> list[str]:
    try:
        return _apply(dialect, schema, connection)
    except SafebusError:
        raise
    except Exception as exc:
        raise MigrationError(f"the {schema.store} store at {dialect.describe()} could not be upgraded: "
                             f"{type(exc).__name__}: {exc}") from exc


def _apply(dialect: Dialect, schema: Schema, connection: Connection | None) -> list[str]:
    migrations = _migrations(schema, dialect)
    with _backend(dialect, connection) as backend, backend.lock(timeout=_LOCK_TIMEOUT_S):
        applied = _applied(backend, migrations)
        if isinstance(dialect, SQLiteDialect) and not applied and schema.legacy_columns:
            with backend.transaction():
                added = _add_legacy_columns(backend, schema)
            if added:
                _log.info("migrations.legacy_columns_added", store=schema.store, columns=added)
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    ids = [m.id for m in pending]
    if ids:
        _log.info("migrations.applied", store=schema.store, location=dialect.describe(), migrations=ids)
    return ids


def status(location: Path | str | None, schema: Schema) -> Status:
    """
    What the store at `location` has applied and what it lacks (creating only yoyo's own tables).

    Raises ConfigError for a bad location, MigrationError when the database cannot be read.
    """
    dialect = dialect_for(location)
    migrations = _migrations(schema, dialect)
    try:
        with _backend(dialect) as backend:
            applied = _applied(backend, migrations)
    except SafebusError:
        raise
    except Exception as exc:
        raise MigrationError(f"the {schema.store} store at {dialect.describe()} could not be read: "
                             f"{type(exc).__name__}: {exc}") from exc
    return Status(store=schema.store, location=dialect.describe(),
                  applied=tuple(m.id for m in migrations if m.id in applied),
                  pending=tuple(m.id for m in migrations if m.id not in applied))


def ensure_current(dialect: Dialect, connection: Connection, schema: Schema) -> None:
    """
    Upgrade the store `connection` is open on unless every migration of `schema` is recorded already.

    The check is one query on the store's own connection; only a store that
    is behind (or new) pays for yoyo.
    """
    wanted = set(schema.ids(dialect))
    cursor = connection.cursor()
    try:
        cursor.execute(f"SELECT migration_id FROM {MIGRATION_TABLE}")  # noqa: S608 - a constant
        recorded = {row[0] for row in cursor.fetchall()}
    except Exception:  # noqa: BLE001 - no migration table yet (the drivers name that error differently)
        recorded = set()
    connection.rollback()
    if not wanted <= recorded:
        _upgrade(dialect, schema, connection if _in_memory(dialect) else None)

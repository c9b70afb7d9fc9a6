"""
Schema versions: a store's migrations are applied once, in order, and a file from before migrations is adopted.

These run on SQLite with a small schema of their own; the stores' real
migrations are tested in tests/unit/consumers/test_migrations.py, and both
engines in tests/integration/test_stores_on_both_engines.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from safebus.errors import ConfigError
from safebus.migrations import MigrationError, Schema, ensure_current, status, upgrade
from safebus.sql_dialects import SQLiteDialect


def _schema(folder: Path, *migrations: str, legacy: dict[str, tuple[str, ...]] | None = None) -> Schema:
    """A store ``notes`` whose migrations are `migrations`, numbered from 0001, for SQLite."""
    (folder / "sqlite").mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(migrations, start=1):
        (folder / "sqlite" / f"notes-{number:04d}-step.sql").write_text(text)
    return Schema("notes", folder, legacy_columns=legacy or {})


_BASELINE = "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT NOT NULL);"


def _columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_a_fresh_database_gets_every_migration_once(tmp_path: Path) -> None:
    schema = _schema(tmp_path / "migrations", _BASELINE, "ALTER TABLE notes ADD COLUMN author TEXT;")
    db = tmp_path / "notes.sqlite"
    assert status(db, schema).pending == ("notes-0001-step", "notes-0002-step")
    assert upgrade(db, schema) == ["notes-0001-step", "notes-0002-step"]
    assert upgrade(db, schema) == [], "a second run changes nothing (an ALTER run twice would fail)"
    assert status(db, schema).current
    assert _columns(db, "notes") == ["id", "body", "author"]


def test_a_new_migration_is_applied_to_a_database_at_the_previous_version(tmp_path: Path) -> None:
    folder, db = tmp_path / "migrations", tmp_path / "notes.sqlite"
    upgrade(db, _schema(folder, _BASELINE))
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO notes VALUES ('1', 'kept')")
    schema = _schema(folder, _BASELINE, "ALTER TABLE notes ADD COLUMN author TEXT;")
    assert status(db, schema).pending == ("notes-0002-step",)
    assert upgrade(db, schema) == ["notes-0002-step"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, body, author FROM notes").fetchall() == [("1", "kept", None)]


def test_a_file_from_before_migrations_is_adopted_and_gains_the_columns_the_old_code_added(tmp_path: Path) -> None:
    """The baseline is a no-op on the existing table; a column the old code added on open is added the same way."""
    db = tmp_path / "notes.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)")  # the first release's shape
        conn.execute("INSERT INTO notes VALUES ('1', 'from the first release')")
    baseline = "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, author TEXT);"
    schema = _schema(tmp_path / "migrations", baseline, legacy={"notes": ("author TEXT",)})
    assert upgrade(db, schema) == ["notes-0001-step"]
    assert _columns(db, "notes") == ["id", "body", "author"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT * FROM notes").fetchall() == [("1", "from the first release", None)]
    fresh = tmp_path / "fresh.sqlite"
    upgrade(fresh, schema)
    assert _columns(fresh, "notes") == _columns(db, "notes"), "old and new files end in the same shape"


def test_a_failing_migration_applies_nothing_of_itself_and_says_which_store(tmp_path: Path) -> None:
    db = tmp_path / "notes.sqlite"
    schema = _schema(tmp_path / "migrations", _BASELINE,
                     "CREATE TABLE extra (x TEXT); INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(MigrationError, match="notes store"):
        upgrade(db, schema)
    assert status(db, schema).applied == ("notes-0001-step",)
    with sqlite3.connect(db) as conn:
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall()


def test_a_path_that_would_confuse_a_sqlite_uri_is_opened_as_a_path(tmp_path: Path) -> None:
    db = tmp_path / "odd ?#% name" / "notes.sqlite"
    assert upgrade(db, _schema(tmp_path / "migrations", _BASELINE)) == ["notes-0001-step"]
    assert db.exists()
    assert _columns(db, "notes") == ["id", "body"]


def test_an_in_memory_database_is_migrated_on_its_own_connection(tmp_path: Path) -> None:
    schema = _schema(tmp_path / "migrations", _BASELINE)
    dialect = SQLiteDialect(None)
    connection = dialect.connect()
    ensure_current(dialect, connection, schema)
    ensure_current(dialect, connection, schema)
    cursor = connection.cursor()
    cursor.execute("INSERT INTO notes VALUES ('1', 'in memory')")
    connection.commit()
    cursor.execute("SELECT body FROM notes")
    assert cursor.fetchall() == [("in memory",)]
    connection.close()


def test_an_unknown_scheme_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        upgrade("mysql://somewhere/db", _schema(tmp_path / "migrations", _BASELINE))

"""A store's database: transactions commit whole or not at all, nest by joining, and the schema is current on open."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from safebus.migrations import Schema, status
from safebus.sql_store import Database


@pytest.fixture
def schema(tmp_path: Path) -> Schema:
    folder = tmp_path / "migrations"
    (folder / "sqlite").mkdir(parents=True)
    (folder / "sqlite" / "notes-0001-baseline.sql").write_text(
        "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT NOT NULL);")
    return Schema("notes", folder)


def _bodies(db: Database) -> list[str]:
    with db.transaction() as cursor:
        return [row[0] for row in cursor.execute("SELECT body FROM notes ORDER BY id").fetchall()]


def test_opening_brings_the_schema_to_its_current_version(tmp_path: Path, schema: Schema) -> None:
    db = Database(tmp_path / "notes.sqlite", schema)
    assert status(tmp_path / "notes.sqlite", schema).current
    assert _bodies(db) == []
    db.close()


def test_a_transaction_that_raises_leaves_nothing_behind(tmp_path: Path, schema: Schema) -> None:
    db = Database(tmp_path / "notes.sqlite", schema)
    def half_done() -> None:
        with db.transaction() as cursor:
            cursor.execute("INSERT INTO notes VALUES (?, ?)", ("1", "first"))
            raise ValueError("halfway")

    with pytest.raises(ValueError, match="halfway"):
        half_done()
    assert _bodies(db) == []
    db.close()


def test_a_transaction_inside_another_joins_it(tmp_path: Path, schema: Schema) -> None:
    db = Database(tmp_path / "notes.sqlite", schema)
    def nested() -> None:
        with db.transaction() as outer:
            outer.execute("INSERT INTO notes VALUES (?, ?)", ("1", "outer"))
            with db.transaction() as inner:
                inner.execute("INSERT INTO notes VALUES (?, ?)", ("2", "inner"))
            raise ValueError("outer")

    with pytest.raises(ValueError, match="outer"):
        nested()
    assert _bodies(db) == [], "the inner block did not commit the outer one's work early"
    db.close()


def test_writes_commit_and_are_seen_by_another_connection(tmp_path: Path, schema: Schema) -> None:
    db = Database(tmp_path / "notes.sqlite", schema)
    with db.transaction() as cursor:
        assert cursor.executemany("INSERT INTO notes VALUES (?, ?)", [("1", "a"), ("2", "b")]).rowcount == 2
        assert cursor.executemany("INSERT INTO notes VALUES (?, ?)", []).rowcount == 0
    with sqlite3.connect(tmp_path / "notes.sqlite") as other:
        assert other.execute("SELECT COUNT(*) FROM notes").fetchone() == (2,)
    db.close()


def test_an_exclusive_transaction_keeps_another_writer_out_until_it_ends(tmp_path: Path, schema: Schema) -> None:
    first, second = Database(tmp_path / "notes.sqlite", schema), Database(tmp_path / "notes.sqlite", schema)
    inside, release, order = threading.Event(), threading.Event(), []

    def hold() -> None:
        with first.transaction(exclusive="notes") as cursor:
            inside.set()
            release.wait(5)
            cursor.execute("INSERT INTO notes VALUES ('1', 'first')")
            order.append("first")

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    threading.Timer(0.3, release.set).start()
    with second.transaction(exclusive="notes") as cursor:
        order.append("second")
        cursor.execute("INSERT INTO notes VALUES ('2', 'second')")
    holder.join(5)
    assert order == ["first", "second"]
    first.close()
    second.close()

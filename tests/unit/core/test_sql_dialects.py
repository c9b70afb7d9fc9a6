"""A store's location names its engine; nothing else is guessed, and a password is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus.errors import ConfigError
from safebus.sql_dialects import PostgreSQLDialect, SQLiteDialect, dialect_for, location_text


@pytest.mark.parametrize(("location", "path"), [
    (Path("/srv/safebus/inbox.sqlite"), Path("/srv/safebus/inbox.sqlite")),
    ("/srv/safebus/inbox.sqlite", Path("/srv/safebus/inbox.sqlite")),
    ("relative/inbox.sqlite", Path("relative/inbox.sqlite")),
    ("sqlite:////srv/safebus/inbox.sqlite", Path("/srv/safebus/inbox.sqlite")),
    ("sqlite:///relative/inbox.sqlite", Path("relative/inbox.sqlite")),
])
def test_a_path_or_sqlite_url_is_a_sqlite_file(location: Path | str, path: Path) -> None:
    assert dialect_for(location) == SQLiteDialect(path)


@pytest.mark.parametrize("url", ["postgresql://safebus@db.internal:5432/northdale", "postgres://u@h/d"])
def test_a_postgresql_url_is_passed_on_as_it_is(url: str) -> None:
    assert dialect_for(url) == PostgreSQLDialect(url)


def test_no_location_is_sqlite_in_memory() -> None:
    assert dialect_for(None) == SQLiteDialect(None)
    assert location_text(None) == ":memory:"


@pytest.mark.parametrize("url", ["mysql://h/d", "https://example.invalid/db"])
def test_any_other_scheme_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///path or postgresql://"):
        dialect_for(url)


def test_a_password_in_the_url_is_masked_in_messages() -> None:
    assert location_text("postgresql://safebus:hunter2@db:5432/northdale") == "postgresql://safebus:***@db:5432/northdale"
    assert "hunter2" not in location_text("postgresql://safebus:hunter2@db/northdale?sslmode=require")


def test_placeholders_are_rewritten_for_psycopg_only() -> None:
    statement = "SELECT 1 FROM alerts WHERE a = ? AND b = ?"
    assert SQLiteDialect(None).sql(statement) == statement
    assert PostgreSQLDialect("postgresql://h/d").sql(statement) == "SELECT 1 FROM alerts WHERE a = %s AND b = %s"

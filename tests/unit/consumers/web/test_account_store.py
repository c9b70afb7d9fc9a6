"""
Accounts kept in a shared database: every host sees the same Key Adults, and a change is seen at once.

Run on a SQLite file standing in for the shared database (the same on
PostgreSQL: tests/integration/test_stores_on_both_engines.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from safebus.consumers.inbox.key_adults import KeyAdults
from safebus.consumers.web.account_store import DatabaseSource
from safebus.errors import ConfigError
from safebus.schemas.encompass import KeyAdultRole

PASSWORD = "synthetic demo password"


def _key_adults(db: Path, host: Path, *, seed: bool = True) -> KeyAdults:
    """The Key Adults as one host opens them: its own (seed) file path, the shared database."""
    path = host / "school-inbox" / "key-adults.json"
    return KeyAdults(path, source=DatabaseSource(db, name="key-adults", what="Key Adult", seed=path if seed else None))


def _add(key_adults: KeyAdults, staff_id: str = "900101-ka") -> None:
    key_adults.add(staff_id, setting_urn="900101", role=KeyAdultRole.KEY_ADULT, display_name="Key Adult",
                   email="dsl@school-900101.example", password=PASSWORD)


def test_an_account_added_on_one_host_signs_in_on_another(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    one, two = _key_adults(db, tmp_path / "one"), _key_adults(db, tmp_path / "two")
    _add(one)
    assert two.authenticate("900101-ka", PASSWORD) is not None
    assert two.authenticate("900101-ka", "a wrong password!") is None
    assert not (tmp_path / "one" / "school-inbox" / "key-adults.json").exists(), "nothing is written to a file"


def test_a_password_reset_on_one_host_ends_the_old_password_on_the_other(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    one, two = _key_adults(db, tmp_path / "one"), _key_adults(db, tmp_path / "two")
    _add(one)
    before = two.get("900101-ka")
    assert before is not None
    one.reset_password("900101-ka", "another synthetic password")
    after = two.get("900101-ka")
    assert after is not None
    assert after.credential_version != before.credential_version, "sessions bound to the old password end"
    assert two.authenticate("900101-ka", PASSWORD) is None
    two.remove("900101-ka")
    assert one.get("900101-ka") is None


def test_a_refused_change_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    one = _key_adults(db, tmp_path / "one")
    _add(one)
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT revision FROM account_documents").fetchone()
    conn.close()
    with pytest.raises(ConfigError, match="already has an account"):
        _add(_key_adults(db, tmp_path / "two"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT revision FROM account_documents").fetchone() == (revision,)
    conn.close()


def test_a_hosts_accounts_file_is_copied_in_once_when_the_database_has_none(tmp_path: Path) -> None:
    """Moving to the shared database keeps the accounts; after that the file is not read again."""
    host = tmp_path / "one"
    _add(KeyAdults(host / "school-inbox" / "key-adults.json"))  # the file, as before the move
    db = tmp_path / "shared.sqlite"
    moved = _key_adults(db, host)
    assert moved.authenticate("900101-ka", PASSWORD) is not None
    _add(moved, "900101-deputy")
    assert _key_adults(db, tmp_path / "two", seed=False).get("900101-deputy") is not None
    assert KeyAdults(host / "school-inbox" / "key-adults.json").get("900101-deputy") is None
    assert _key_adults(db, host).get("900101-deputy") is not None, "the file is not copied in again over newer"

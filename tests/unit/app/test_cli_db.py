"""
``safebus db upgrade`` / ``db status`` on SQLite: a fresh state directory reaches the current version once.

Run as the real command in a subprocess.  The same on PostgreSQL is in
tests/integration/test_stores_on_both_engines.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from safebus.app.cli_db import STORES


def _safebus(state: Path, *argv: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAFEBUS_DATABASE_URL"} | {"SAFEBUS_HOME": str(state)}
    if url is not None:
        env["SAFEBUS_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "safebus", *argv], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)


def _lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line.split()[0]: line for line in done.stdout.splitlines()}


def test_upgrade_brings_every_store_to_its_current_version_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    before = _safebus(tmp_path, "db", "status")
    assert before.returncode == 3, before.stderr
    assert all("pending" in line for line in _lines(before).values())

    first = _safebus(tmp_path, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert set(_lines(first)) == set(STORES) - {"accounts"}, "accounts are JSON files without a shared database"
    assert "applied inbox-0001-baseline" in _lines(first)["inbox"]
    assert str(tmp_path / "inbox.sqlite") in _lines(first)["inbox"]

    second = _safebus(tmp_path, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert all(line.endswith("already current") for line in _lines(second).values())
    after = _safebus(tmp_path, "db", "status")
    assert after.returncode == 0
    assert all("current (applied:" in line for line in _lines(after).values())


def test_an_inbox_file_from_the_first_release_is_upgraded_with_its_alerts(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript("CREATE TABLE alerts (notification_id TEXT PRIMARY KEY, setting_urn TEXT NOT NULL, "
                          "received_at TEXT NOT NULL, envelope BLOB NOT NULL, acknowledged_at TEXT);")
        old.execute("INSERT INTO alerts VALUES ('n1', '900101', '2026-11-18T09:00:00+00:00', x'00', NULL)")
    old.close()
    done = _safebus(tmp_path, "db", "upgrade", "--store", "inbox")
    assert done.returncode == 0, done.stderr
    assert list(_lines(done)) == ["inbox"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT notification_id, acknowledged_by, acknowledgement_sent_at FROM alerts"
                          ).fetchall() == [("n1", None, None)]
    db.close()


def test_the_shared_database_setting_and_url_choose_where(tmp_path: Path) -> None:
    shared = tmp_path / "one.sqlite"
    done = _safebus(tmp_path, "db", "upgrade", url=f"sqlite:///{shared}")
    assert done.returncode == 0, done.stderr
    assert set(_lines(done)) == set(STORES)
    assert all(str(shared) in line for line in _lines(done).values())
    assert not (tmp_path / "inbox.sqlite").exists()
    other = tmp_path / "other.sqlite"
    explicit = _safebus(tmp_path, "db", "upgrade", "--url", str(other), "--store", "queues")
    assert explicit.returncode == 0, explicit.stderr
    assert str(other) in _lines(explicit)["queues"]


def test_a_url_no_store_can_open_is_refused_by_name(tmp_path: Path) -> None:
    done = _safebus(tmp_path, "db", "upgrade", url="mysql://db.internal/northdale")
    assert done.returncode == 2
    assert "SAFEBUS_DATABASE_URL" in done.stderr


def test_with_a_shared_database_the_account_commands_write_the_accounts_there(tmp_path: Path) -> None:
    """``key-adult add`` on one host, then the accounts as another host's wiring opens them: the same account."""
    shared, password = tmp_path / "shared.sqlite", tmp_path / "password.txt"
    password.write_text("synthetic demo password\n")
    password.chmod(0o600)
    done = _safebus(tmp_path / "host-a", "key-adult", "add", "--school", "900101", "--staff-id", "900101-ka9",
                    "--name", "Script Added", "--email", "ka9@school-900101.example", "--password-file",
                    str(password), url=f"sqlite:///{shared}")
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "host-a").rglob("key-adults.json")), "no accounts file on the host"
    with sqlite3.connect(shared) as db:
        (content,) = db.execute("SELECT content FROM account_documents WHERE name = 'key-adults'").fetchone()
    db.close()
    assert '"900101-ka9"' in content
    assert "synthetic demo password" not in content, "a hash is stored, never the password"

"""
The stores' migrations: the same versions on both engines, and every file the code before them made is adopted.

A store's file from before migrations came in two shapes: as its first
release made it, and as the last release did (after adding columns on open).
Both must open, keep every row, and end with exactly the tables and columns a
fresh file gets, with the baseline recorded so it is never run again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.monitor import MONITOR_SCHEMA, EncompassMonitor
from safebus.consumers.inbox.store import INBOX_SCHEMA, InboxStore
from safebus.consumers.mail.outbox import MAIL_SCHEMA, MailOutbox
from safebus.consumers.migrations import MIGRATIONS
from safebus.consumers.queues.store import QUEUES_SCHEMA, QueueStore
from safebus.consumers.web.account_store import ACCOUNTS_SCHEMA
from safebus.consumers.web.sessions import SESSIONS_SCHEMA, SessionStore
from safebus.consumers.web.sign_in_throttle import THROTTLE_SCHEMA, SignInThrottle
from safebus.migrations import Schema, status
from safebus.sql_dialects import PostgreSQLDialect, SQLiteDialect
from tests.conftest import FIXED_NOW

SCHEMAS = (INBOX_SCHEMA, QUEUES_SCHEMA, MONITOR_SCHEMA, SESSIONS_SCHEMA, THROTTLE_SCHEMA, MAIL_SCHEMA, ACCOUNTS_SCHEMA)

# The schemas as the code before migrations created them (copied from that code, not from the migrations).
FIRST_INBOX = """
CREATE TABLE alerts (notification_id TEXT PRIMARY KEY, setting_urn TEXT NOT NULL, received_at TEXT NOT NULL,
                     envelope BLOB NOT NULL, acknowledged_at TEXT);
CREATE INDEX alerts_by_setting ON alerts (setting_urn, received_at);
"""
LAST_INBOX = FIRST_INBOX + """
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE alerts ADD COLUMN acknowledged_role TEXT;
ALTER TABLE alerts ADD COLUMN acknowledgement_sent_at TEXT;
"""
QUEUES = """
CREATE TABLE referrals (recipient_id TEXT NOT NULL, referral_id TEXT NOT NULL, event_id TEXT NOT NULL,
                        received_at TEXT NOT NULL, envelope BLOB NOT NULL, taken_at TEXT, taken_by TEXT,
                        receipt_sent_at TEXT, PRIMARY KEY (recipient_id, referral_id));
CREATE INDEX referrals_by_recipient ON referrals (recipient_id, received_at);
"""
FIRST_MONITOR = """
CREATE TABLE tracked (notification_id TEXT PRIMARY KEY, desk TEXT NOT NULL, recipient_id TEXT, setting_urn TEXT,
                      subject TEXT, recorded_at TEXT NOT NULL, due_by TEXT NOT NULL, calendar_version TEXT NOT NULL,
                      delivered_at TEXT, acknowledged_at TEXT, acknowledged_by TEXT,
                      settled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE steps (notification_id TEXT NOT NULL, step TEXT NOT NULL, fired_at TEXT NOT NULL,
                    PRIMARY KEY (notification_id, step));
CREATE INDEX tracked_open ON tracked (settled, acknowledged_at);
CREATE TABLE deliveries (notification_id TEXT PRIMARY KEY, delivered_at TEXT NOT NULL);
CREATE TABLE acknowledgements (notification_id TEXT PRIMARY KEY, acknowledged_at TEXT NOT NULL,
                               acknowledged_by TEXT NOT NULL);
CREATE TABLE unreached (notification_id TEXT NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL,
                        PRIMARY KEY (notification_id, step));
"""
LAST_MONITOR = FIRST_MONITOR + """
ALTER TABLE tracked ADD COLUMN incident_at TEXT;
ALTER TABLE tracked ADD COLUMN police_due_by TEXT;
"""
SESSIONS = """
CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, version TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX sessions_by_user ON sessions (user_id);
"""
LANES = "CREATE TABLE lanes (lane TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_failure REAL NOT NULL);"
OUTBOX = """
CREATE TABLE outbox (key TEXT PRIMARY KEY, message BLOB NOT NULL, queued_at TEXT NOT NULL,
                     attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
                     state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'refused')),
                     done_at TEXT, last_error TEXT);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
"""


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.store)
def test_each_store_has_the_same_versions_on_both_engines_from_a_baseline(schema: Schema) -> None:
    sqlite, postgresql = schema.ids(SQLiteDialect(None)), schema.ids(PostgreSQLDialect("postgresql://h/d"))
    assert sqlite == postgresql
    assert sqlite[0].startswith(f"{schema.store}-0001-")
    assert [int(i.split("-")[1]) for i in sqlite] == list(range(1, len(sqlite) + 1)), "numbered without gaps"


def test_every_migration_file_belongs_to_a_store() -> None:
    """A file with another prefix would be applied by no store: a typo in a name must not pass silently."""
    prefixes = tuple(f"{s.store}-" for s in SCHEMAS)
    for engine in ("sqlite", "postgresql"):
        strays = [p.name for p in (MIGRATIONS / engine).iterdir() if p.suffix == ".sql"
                  and not p.name.startswith(prefixes)]
        assert strays == []


def _shape(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Every table of the store (yoyo's own left out) with its columns and types, in order."""
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE '%yoyo%' ORDER BY name")]
        return {t: [(row[1], row[2]) for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def _open(schema: Schema, path: Path) -> None:
    if schema is INBOX_SCHEMA:
        InboxStore(path).close()
    elif schema is QUEUES_SCHEMA:
        QueueStore(path).close()
    elif schema is MONITOR_SCHEMA:
        EncompassMonitor(path, calendars=sample_calendars(), policy=load_policy(), urn_of={}).close()
    elif schema is SESSIONS_SCHEMA:
        SessionStore(path, clock=lambda: FIXED_NOW).close()
    elif schema is THROTTLE_SCHEMA:
        SignInThrottle(path, clock=lambda: FIXED_NOW).close()
    else:
        MailOutbox(path).close()


@pytest.mark.parametrize(("schema", "old", "table"), [
    (INBOX_SCHEMA, FIRST_INBOX, "alerts"), (INBOX_SCHEMA, LAST_INBOX, "alerts"),
    (QUEUES_SCHEMA, QUEUES, "referrals"),
    (MONITOR_SCHEMA, FIRST_MONITOR, "deliveries"), (MONITOR_SCHEMA, LAST_MONITOR, "deliveries"),
    (SESSIONS_SCHEMA, SESSIONS, "sessions"), (THROTTLE_SCHEMA, LANES, "lanes"), (MAIL_SCHEMA, OUTBOX, "outbox"),
], ids=["inbox-first", "inbox-last", "queues", "monitor-first", "monitor-last", "sessions", "throttle", "mail"])
def test_a_file_from_before_migrations_opens_with_its_rows_and_the_shape_of_a_fresh_one(
        tmp_path: Path, schema: Schema, old: str, table: str) -> None:
    path, fresh = tmp_path / "old.sqlite", tmp_path / "fresh.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(old)
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        row = tuple("pending" if c == "state" else f"{c}-value" for c in columns)  # the outbox CHECKs its state
        db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
                   row)
    db.close()
    assert status(path, schema).pending[0] == f"{schema.store}-0001-baseline"
    _open(schema, path)
    _open(schema, fresh)
    assert _shape(path) == _shape(fresh)
    assert status(path, schema).current
    with sqlite3.connect(path) as db:
        assert db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall() == [row]  # noqa: S608
    db.close()


def test_a_session_from_before_the_realm_still_signs_in_after_the_upgrade(tmp_path: Path) -> None:
    """The realm came in version 0002: a session the old code stored belongs to the app whose file it is in."""
    path, session_id = tmp_path / "web-sessions.sqlite", "a-session-id-the-old-code-issued-0000000000"
    with sqlite3.connect(path) as db:
        db.executescript(SESSIONS)
        db.execute("INSERT INTO sessions VALUES (?, '900101-ka', 'v1', ?)",
                   (hashlib.sha256(session_id.encode()).hexdigest(), (FIXED_NOW + timedelta(hours=1)).timestamp()))
    db.close()
    store = SessionStore(path, clock=lambda: FIXED_NOW)
    found = store.find(session_id)
    assert found is not None
    assert (found.user_id, found.version) == ("900101-ka", "v1")
    assert status(path, SESSIONS_SCHEMA).applied == ("sessions-0001-baseline", "sessions-0002-realm")
    store.close()

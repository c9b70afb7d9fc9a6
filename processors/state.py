"""
The router's durable state, in SQLite: enrolments, consent, incident history, MARAC referrals.

Why not Faust tables: in faust-streaming 0.15.3 a declared GlobalTable stalled
the router's agent on the real broker (records were never delivered while the
table waited to recover an empty changelog — faust-streaming #157, #283,
robinhood/faust #218), and co-partitioned tables cannot serve lookups across
ingress topics with different partition counts.  This store implements the
same `RouterState` protocol (docs/adr/0008), keyed by pseudonymous tokens, so a
changelog-backed implementation can replace it without touching the rules.
Every write is idempotent: replaying an event changes nothing.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

from safebus.processors.batched import BatchedCommits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolments (child TEXT PRIMARY KEY, setting TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consents (subject TEXT, purpose TEXT, status TEXT NOT NULL, at TEXT NOT NULL,
                                     PRIMARY KEY (subject, purpose));
CREATE TABLE IF NOT EXISTS incidents (subject TEXT, event_id TEXT, day TEXT NOT NULL, PRIMARY KEY (subject, event_id));
CREATE TABLE IF NOT EXISTS marac (subject TEXT PRIMARY KEY, day TEXT NOT NULL);
"""


class SqliteRouterState(BatchedCommits):
    """`RouterState` in one SQLite file, plus the writes that reference events make."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the state at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def _one(self, sql: str, *args: str) -> str | None:
        row = self._db.execute(sql, args).fetchone()
        return str(row[0]) if row else None

    def enrolment(self, child_token: str) -> str | None:
        """See `RouterState`."""
        return self._one("SELECT setting FROM enrolments WHERE child = ? AND setting IS NOT NULL", child_token)

    def consent(self, subject_token: str, purpose: str) -> str:
        """See `RouterState`."""
        return self._one("SELECT status FROM consents WHERE subject = ? AND purpose = ?", subject_token,
                         purpose) or "none"

    def incidents_since(self, subject_token: str, since: date) -> int:
        """See `RouterState`."""
        row = self._db.execute("SELECT COUNT(*) FROM incidents WHERE subject = ? AND day >= ?",
                               (subject_token, since.isoformat())).fetchone()
        return int(row[0])

    def last_marac_referral(self, subject_token: str) -> date | None:
        """See `RouterState`."""
        day = self._one("SELECT day FROM marac WHERE subject = ?", subject_token)
        return date.fromisoformat(day) if day else None

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """See `RouterState`."""
        with self._write():
            self._db.execute("INSERT OR IGNORE INTO incidents VALUES (?, ?, ?)",
                             (subject_token, event_id, day.isoformat()))

    def record_marac_referral(self, subject_token: str, day: date) -> None:
        """See `RouterState`."""
        with self._write():
            self._db.execute("INSERT INTO marac VALUES (?, ?) ON CONFLICT(subject) DO UPDATE SET day = "
                             "MAX(day, excluded.day)", (subject_token, day.isoformat()))

    def set_enrolment(self, child_token: str, setting: str | None, at: datetime) -> None:
        """Record a child's setting (a URN, ``home-educated``, or None: unknown) as of `at`; older news loses."""
        with self._write():
            self._db.execute(
                "INSERT INTO enrolments VALUES (?, ?, ?) ON CONFLICT(child) DO UPDATE SET setting = excluded.setting, "
                "at = excluded.at WHERE excluded.at > enrolments.at", (child_token, setting, at.isoformat()))

    def set_consent(self, subject_token: str, purpose: str, status: str, at: datetime) -> None:
        """Record a subject's consent status for a purpose as of `at`; an older record never overrides a newer one."""
        with self._write():
            self._db.execute(
                "INSERT INTO consents VALUES (?, ?, ?, ?) ON CONFLICT(subject, purpose) DO UPDATE SET "
                "status = excluded.status, at = excluded.at WHERE excluded.at > consents.at",
                (subject_token, purpose, status, at.isoformat()))

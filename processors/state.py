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

Consent and enrolment changes are merged in the total order of
`safebus.processors.ordering`, so ties never drop a change and the state is
the same whatever order the changes arrive in.  A child's enrolment keeps every
change at its latest ordering point (they decide together what stands); a
consent keeps the change that stands.  A write that meets a conflicting change
at the same ordering point returns a `Conflict` for the audit log.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

from safebus.processors.batched import BatchedCommits
from safebus.processors.ordering import (
    Conflict,
    ConsentChange,
    EnrolmentChange,
    anonymous_id,
    instant,
    merge_consent,
    merge_enrolment,
    resolve_enrolment,
)

__all__ = ["Conflict", "SqliteRouterState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolment_changes (child TEXT, event_id TEXT, setting TEXT, previous TEXT,
                                              occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
                                              PRIMARY KEY (child, event_id));
CREATE TABLE IF NOT EXISTS consent_changes (subject TEXT, purpose TEXT, status TEXT NOT NULL,
                                            occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
                                            event_id TEXT NOT NULL, PRIMARY KEY (subject, purpose));
CREATE TABLE IF NOT EXISTS incidents (subject TEXT, event_id TEXT, day TEXT NOT NULL, PRIMARY KEY (subject, event_id));
CREATE TABLE IF NOT EXISTS marac (subject TEXT PRIMARY KEY, day TEXT NOT NULL);  -- referrals of unknown event
CREATE TABLE IF NOT EXISTS marac_referrals (
    subject TEXT NOT NULL, event_id TEXT NOT NULL, day TEXT NOT NULL, PRIMARY KEY (subject, event_id)
);
"""


class SqliteRouterState(BatchedCommits):
    """`RouterState` in one SQLite file, plus the writes that reference events make."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the state at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._migrate_newest_wins_tables()

    def _migrate_newest_wins_tables(self) -> None:
        """Carry a store written before the total order (one row per key, ``at`` only) into the new tables."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "enrolments" in tables:
            for child, setting, at in self._db.execute("SELECT child, setting, at FROM enrolments").fetchall():
                SqliteRouterState.set_enrolment(self, child, setting, datetime.fromisoformat(at))
            with self._db:
                self._db.execute("DROP TABLE enrolments")
        if "consents" in tables:
            for subject, purpose, status, at in self._db.execute(
                    "SELECT subject, purpose, status, at FROM consents").fetchall():
                SqliteRouterState.set_consent(self, subject, purpose, status, datetime.fromisoformat(at))
            with self._db:
                self._db.execute("DROP TABLE consents")

    def _one(self, sql: str, *args: str) -> str | None:
        row = self._db.execute(sql, args).fetchone()
        return str(row[0]) if row else None

    def enrolment(self, child_token: str) -> str | None:
        """See `RouterState` (`UNRESOLVED` while same-instant changes conflict)."""
        return resolve_enrolment(self.enrolment_changes(child_token))

    def consent(self, subject_token: str, purpose: str) -> str:
        """See `RouterState`."""
        change = self.consent_change(subject_token, purpose)
        return change.status if change else "none"

    def enrolment_changes(self, child_token: str) -> list[EnrolmentChange]:
        """Every change to a child's enrolment at its latest ordering point (what decides the setting)."""
        rows = self._db.execute("SELECT setting, previous, occurred_at, recorded_at, event_id FROM enrolment_changes "
                                "WHERE child = ? ORDER BY event_id", (child_token,)).fetchall()
        return [EnrolmentChange(setting=r[0], previous=r[1], occurred_at=r[2], recorded_at=r[3], event_id=r[4])
                for r in rows]

    def consent_change(self, subject_token: str, purpose: str) -> ConsentChange | None:
        """The change that stands for a subject's consent to a purpose, if any."""
        row = self._db.execute("SELECT status, occurred_at, recorded_at, event_id FROM consent_changes "
                               "WHERE subject = ? AND purpose = ?", (subject_token, purpose)).fetchone()
        return ConsentChange(status=row[0], occurred_at=row[1], recorded_at=row[2], event_id=row[3]) if row else None

    def incidents_since(self, subject_token: str, since: date) -> int:
        """See `RouterState`."""
        row = self._db.execute("SELECT COUNT(*) FROM incidents WHERE subject = ? AND day >= ?",
                               (subject_token, since.isoformat())).fetchone()
        return int(row[0])

    def last_marac_referral(self, subject_token: str, *, excluding_event: str | None = None) -> date | None:
        """See `RouterState`; a referral stored before referrals were kept by event (`marac`) always counts."""
        row = self._db.execute(
            "SELECT MAX(day) FROM (SELECT day FROM marac WHERE subject = ? UNION ALL "
            "SELECT day FROM marac_referrals WHERE subject = ? AND event_id IS NOT ?)",
            (subject_token, subject_token, excluding_event)).fetchone()
        return date.fromisoformat(row[0]) if row and row[0] else None

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """See `RouterState`."""
        with self._write():
            self._db.execute("INSERT OR IGNORE INTO incidents VALUES (?, ?, ?)",
                             (subject_token, event_id, day.isoformat()))

    def record_marac_referral(self, subject_token: str, day: date, *, event_id: str | None = None) -> None:
        """See `RouterState`."""
        with self._write():
            if event_id is None:
                self._db.execute("INSERT INTO marac VALUES (?, ?) ON CONFLICT(subject) DO UPDATE SET day = "
                                 "MAX(day, excluded.day)", (subject_token, day.isoformat()))
            else:
                self._db.execute("INSERT INTO marac_referrals VALUES (?, ?, ?) ON CONFLICT(subject, event_id) "
                                 "DO UPDATE SET day = MAX(day, excluded.day)",
                                 (subject_token, event_id, day.isoformat()))

    def set_enrolment(self, child_token: str, setting: str | None, at: datetime, *,
                      recorded_at: datetime | None = None, event_id: str | None = None,
                      previous: str | None = None) -> Conflict | None:
        """
        Merge a change of a child's setting (a URN, ``home-educated``, or None: unknown) that happened at `at`.

        `previous` is the setting the change moves from, if it says.  An older
        change loses; a newer one replaces what is known; one at the same
        ordering point joins the others there, and they decide together
        (`resolve_enrolment`).  Returns the conflict if they now disagree.
        """
        change = EnrolmentChange(setting=setting, previous=previous, occurred_at=instant(at),
                                 recorded_at=instant(recorded_at or at),
                                 event_id=event_id or anonymous_id("enrolment", child_token, setting, previous,
                                                                   instant(at)))
        with self._write():
            latest, conflict = merge_enrolment(self.enrolment_changes(child_token), change, child_token)
            self._db.execute("DELETE FROM enrolment_changes WHERE child = ?", (child_token,))
            self._db.executemany("INSERT INTO enrolment_changes VALUES (?, ?, ?, ?, ?, ?)",
                                 [(child_token, c.event_id, c.setting, c.previous, c.occurred_at, c.recorded_at)
                                  for c in latest])
        return conflict

    def set_consent(self, subject_token: str, purpose: str, status: str, at: datetime, *,
                    recorded_at: datetime | None = None, event_id: str | None = None) -> Conflict | None:
        """
        Merge a subject's consent status for a purpose, as of `at`: the greatest change in the total order stands.

        An older change never overrides a newer one; at the same ordering point
        the safer status stands (withdrawn, then refused, then given) and the
        disagreement is returned as a conflict.
        """
        change = ConsentChange(status=status, occurred_at=instant(at), recorded_at=instant(recorded_at or at),
                               event_id=event_id or anonymous_id("consent", subject_token, purpose, status,
                                                                 instant(at)))
        with self._write():
            current = self.consent_change(subject_token, purpose)
            stands, conflict = merge_consent(current, change, subject_token, purpose)
            if stands is not current:
                self._db.execute(
                    "INSERT INTO consent_changes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(subject, purpose) DO UPDATE "
                    "SET status = excluded.status, occurred_at = excluded.occurred_at, "
                    "recorded_at = excluded.recorded_at, event_id = excluded.event_id",
                    (subject_token, purpose, stands.status, stands.occurred_at, stands.recorded_at,
                     stands.event_id))
        return conflict

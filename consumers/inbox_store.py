"""
A school's Operation Encompass inbox, stored in SQLite.

The notification id is the primary key: a redelivered notification (the
processor and this consumer are both at-least-once) is recognised and not
stored twice, which is what makes delivery effectively once for the Key Adult.

Alerts are stored as the sealed envelopes they arrived in and opened when read,
so the inbox holds no plaintext: when a child's data is erased (their data keys
destroyed), their alerts here become unreadable with every other copy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.schemas.encompass import EncompassNotification

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    notification_id TEXT PRIMARY KEY,
    setting_urn     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    envelope        BLOB NOT NULL,
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_setting ON alerts (setting_urn, received_at);
"""


Opener = Callable[[str, bytes], EncompassNotification | None]
"""Opens a stored envelope for a setting URN; None when it can no longer be read (erased)."""


@dataclass(frozen=True, kw_only=True)
class Arrival:
    """A verified notification as it arrived, with the envelope that carried it."""

    notification_id: str
    setting_urn: str
    envelope: bytes


@dataclass(frozen=True, kw_only=True)
class StoredAlert:
    """One alert as the inbox shows it; `notification` is None once the child's data is erased."""

    notification_id: str
    notification: EncompassNotification | None
    received_at: datetime
    acknowledged_at: datetime | None

    def describe(self) -> str:
        """One line for a Key Adult: the child, the police reference, the incident and its status."""
        status = "acknowledged" if self.acknowledged_at else "awaiting acknowledgement"
        n = self.notification
        if n is None:
            return f"[{self.received_at:%Y-%m-%d %H:%M}] (this child's data has been erased) · {status}"
        return (f"[{self.received_at:%Y-%m-%d %H:%M}] {n.child_first_name} {n.child_surname} "
                f"(born {n.child_date_of_birth}) · police ref {n.police_reference} · "
                f"incident {n.incident_at:%Y-%m-%d %H:%M %Z} · present: {'yes' if n.child_present else 'no'} · "
                f"{status}")


class InboxStore:
    """The inbox database; one file can hold the inboxes of several schools."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the inbox at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def store(self, arrival: Arrival, *, received_at: datetime) -> bool:
        """Store `arrival`; return False when it was already there (a redelivery)."""
        return self.store_many([arrival], received_at=received_at) == 1

    def store_many(self, arrivals: list[Arrival], *, received_at: datetime) -> int:
        """Store `arrivals` in one transaction; return how many were new."""
        with self._db:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO alerts (notification_id, setting_urn, received_at, envelope) "
                "VALUES (?, ?, ?, ?)",
                [(a.notification_id, a.setting_urn, received_at.isoformat(), a.envelope) for a in arrivals],
            )
            return self._db.total_changes - before

    def alerts(self, setting_urn: str, opener: Opener) -> list[StoredAlert]:
        """Return the setting's alerts, oldest first, opened with `opener`."""
        rows = self._db.execute(
            "SELECT notification_id, envelope, received_at, acknowledged_at FROM alerts WHERE setting_urn = ? "
            "ORDER BY received_at, notification_id",
            (setting_urn,),
        ).fetchall()
        return [
            StoredAlert(
                notification_id=row[0],
                notification=opener(setting_urn, row[1]),
                received_at=datetime.fromisoformat(row[2]),
                acknowledged_at=datetime.fromisoformat(row[3]) if row[3] else None,
            )
            for row in rows
        ]

    def received_at(self, notification_ids: list[str]) -> dict[str, datetime]:
        """Return when each of `notification_ids` that has arrived was received."""
        found: dict[str, datetime] = {}
        for start in range(0, len(notification_ids), 500):
            chunk = notification_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for nid, received in self._db.execute(
                f"SELECT notification_id, received_at FROM alerts WHERE notification_id IN ({marks})",  # noqa: S608
                chunk,
            ):
                found[nid] = datetime.fromisoformat(received)
        return found

    def raw_rows(self) -> list[tuple[str, ...]]:
        """Every stored row as text (blobs decoded leniently), for disclosure checks over the whole database."""
        return [
            tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in row)
            for row in self._db.execute("SELECT * FROM alerts")
        ]

    def close(self) -> None:
        """Close the database."""
        self._db.close()

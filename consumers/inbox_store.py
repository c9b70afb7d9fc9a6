"""
A school's Operation Encompass inbox, stored in SQLite.

The notification id is the primary key: a redelivered notification (the
processor and this consumer are both at-least-once) is recognised and not
stored twice, which is what makes delivery effectively once for the Key Adult.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.schemas.encompass import EncompassNotification

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    notification_id TEXT PRIMARY KEY,
    setting_urn     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    notification    TEXT NOT NULL,
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_setting ON alerts (setting_urn, received_at);
"""


@dataclass(frozen=True, kw_only=True)
class StoredAlert:
    """One alert as the inbox holds it."""

    notification: EncompassNotification
    received_at: datetime
    acknowledged_at: datetime | None


class InboxStore:
    """The inbox database; one file can hold the inboxes of several schools."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the inbox at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def store(self, notification: EncompassNotification, *, received_at: datetime) -> bool:
        """Store `notification`; return False when it was already there (a redelivery)."""
        return self.store_many([notification], received_at=received_at) == 1

    def store_many(self, notifications: list[EncompassNotification], *, received_at: datetime) -> int:
        """Store `notifications` in one transaction; return how many were new."""
        with self._db:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO alerts (notification_id, setting_urn, received_at, notification) "
                "VALUES (?, ?, ?, ?)",
                [(n.notification_id, n.setting_urn, received_at.isoformat(), n.model_dump_json())
                 for n in notifications],
            )
            return self._db.total_changes - before

    def alerts(self, setting_urn: str) -> list[StoredAlert]:
        """Return the setting's alerts, oldest first."""
        rows = self._db.execute(
            "SELECT notification, received_at, acknowledged_at FROM alerts WHERE setting_urn = ? "
            "ORDER BY received_at, notification_id",
            (setting_urn,),
        ).fetchall()
        return [
            StoredAlert(
                notification=EncompassNotification.model_validate_json(row[0]),
                received_at=datetime.fromisoformat(row[1]),
                acknowledged_at=datetime.fromisoformat(row[2]) if row[2] else None,
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
        """Every stored row as text, for disclosure checks over the whole database."""
        return [tuple(str(c) for c in row) for row in self._db.execute("SELECT * FROM alerts")]

    def close(self) -> None:
        """Close the database."""
        self._db.close()

"""
A school's Operation Encompass inbox, stored in SQLite.

The notification id is the primary key: a redelivered notification (the
processor and this consumer are both at-least-once) is recognised and not
stored twice, which is what makes delivery effectively once for the Key Adult.

Alerts are stored as the sealed envelopes they arrived in and opened when read,
so the inbox holds no plaintext: when a child's data is erased (their data keys
destroyed), their alerts here become unreadable with every other copy.

Acknowledgements (domain A4) live beside the alert they acknowledge:

- **First acknowledgement wins.**  The update only touches a row that is not
  yet acknowledged, so a double click, a resubmitted form or a deputy who
  acknowledges a moment after the Key Adult cannot rewrite who read it first
  or when.  The acknowledgement holds a staff id and a role, no other detail.
- **Bounded by setting.**  The update names the setting as well as the
  notification id, so a member of staff can acknowledge only their own
  setting's alerts, even when one database hosts several schools.
- **Outbox.**  The ``encompass.acknowledged`` event is reported from the stored
  acknowledgement, and marked sent only after it was handed over, so a failed
  publish is retried from `acknowledgements_unsent` and a sent one is never
  sent again.

The inbox lives in a SQLite file by default, or in a PostgreSQL database that
several hosts share (several web instances behind one address, a worker on
another host); `InboxStore` takes either location, and its schema versions are
the ``inbox-`` migrations (`safebus.consumers.migrations`).  One connection
serves the threads of a web server and a worker, every use under its lock
(`safebus.sql_store.Database`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.consumers.migrations import MIGRATIONS
from safebus.migrations import Schema
from safebus.schemas.encompass import Acknowledger, EncompassNotification, KeyAdultRole
from safebus.sql_store import Database

__all__ = ["INBOX_SCHEMA", "Acknowledgement", "Arrival", "InboxStore", "Opener", "StoredAlert"]

INBOX_SCHEMA = Schema("inbox", MIGRATIONS, legacy_columns={"alerts": (
    "acknowledged_by TEXT",          # staff id
    "acknowledged_role TEXT",        # KeyAdultRole value
    "acknowledgement_sent_at TEXT",  # when the encompass.acknowledged event was handed over
)})
"""The inbox's schema versions; the columns are those the first release lacked, which a file of its gains."""

_ALERT_COLUMNS = "notification_id, envelope, received_at, acknowledged_at, acknowledged_by, acknowledged_role"


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
    acknowledged_by: Acknowledger | None = None

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


@dataclass(frozen=True, kw_only=True)
class Acknowledgement:
    """A stored acknowledgement: which alert, at which setting, who read it first, and when."""

    notification_id: str
    setting_urn: str
    acknowledged_by: Acknowledger
    acknowledged_at: datetime


class InboxStore:
    """The inbox database; one database can hold the inboxes of several schools."""

    def __init__(self, location: Path | str) -> None:
        """Open (creating if needed, and upgrading) the inbox at `location`: a SQLite path or a PostgreSQL URL."""
        self._db = Database(location, INBOX_SCHEMA)

    def store(self, arrival: Arrival, *, received_at: datetime) -> bool:
        """Store `arrival`; return False when it was already there (a redelivery)."""
        return self.store_many([arrival], received_at=received_at) == 1

    def store_many(self, arrivals: list[Arrival], *, received_at: datetime) -> int:
        """Store `arrivals` in one transaction; return how many were new."""
        with self._db.transaction() as cursor:
            return cursor.executemany(
                "INSERT INTO alerts (notification_id, setting_urn, received_at, envelope) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
                [(a.notification_id, a.setting_urn, received_at.isoformat(), a.envelope) for a in arrivals],
            ).rowcount

    def alerts(self, setting_urn: str, opener: Opener) -> list[StoredAlert]:
        """Return the setting's alerts, oldest first, opened with `opener`."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE setting_urn = ? "  # noqa: S608
                "ORDER BY received_at, notification_id",
                (setting_urn,),
            ).fetchall()
        return [_stored_alert(setting_urn, row, opener) for row in rows]

    def alert(self, setting_urn: str, notification_id: str, opener: Opener) -> StoredAlert | None:
        """Return one of the setting's alerts, opened with `opener`; None if the setting has no such alert."""
        with self._db.transaction() as cursor:
            row = cursor.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE setting_urn = ? AND notification_id = ?",  # noqa: S608
                (setting_urn, notification_id),
            ).fetchone()
        return None if row is None else _stored_alert(setting_urn, row, opener)

    def acknowledge(self, notification_id: str, setting_urn: str, *, staff_id: str, role: KeyAdultRole,
                    at: datetime) -> bool:
        """
        Record that `staff_id` (in `role`) at `setting_urn` acknowledged the alert, at `at`.

        Return True if this call recorded the acknowledgement.  False means
        nothing changed: the alert was already acknowledged (the first
        acknowledgement stands, whoever made it) or `setting_urn` has no alert
        `notification_id` (staff cannot acknowledge another setting's alert).
        Raises ValueError if `at` has no time zone.
        """
        if at.tzinfo is None:
            raise ValueError("an acknowledgement time must be timezone-aware")
        with self._db.transaction() as cursor:
            return cursor.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, acknowledged_role = ? "
                "WHERE notification_id = ? AND setting_urn = ? AND acknowledged_at IS NULL",
                (at.isoformat(), staff_id, KeyAdultRole(role).value, notification_id, setting_urn),
            ).rowcount == 1

    def acknowledgements_unsent(self, setting_urn: str | None = None) -> list[Acknowledgement]:
        """Acknowledgements whose event has not been handed over yet (of one setting, or of all), oldest first."""
        query = ("SELECT notification_id, setting_urn, acknowledged_by, acknowledged_role, acknowledged_at "
                 "FROM alerts WHERE acknowledged_at IS NOT NULL AND acknowledged_by IS NOT NULL "
                 "AND acknowledged_role IS NOT NULL AND acknowledgement_sent_at IS NULL")
        parameters: tuple[str, ...] = ()
        if setting_urn is not None:
            query += " AND setting_urn = ?"
            parameters = (setting_urn,)
        with self._db.transaction() as cursor:
            rows = cursor.execute(query + " ORDER BY acknowledged_at, notification_id", parameters).fetchall()
        return [
            Acknowledgement(notification_id=nid, setting_urn=urn,
                            acknowledged_by=Acknowledger(staff_id=staff_id, role=KeyAdultRole(role)),
                            acknowledged_at=datetime.fromisoformat(at))
            for nid, urn, staff_id, role, at in rows
        ]

    def acknowledgement_sent(self, notification_id: str, *, at: datetime) -> None:
        """Mark the acknowledgement event of `notification_id` as handed over, so it is never sent again."""
        with self._db.transaction() as cursor:
            cursor.execute(
                "UPDATE alerts SET acknowledgement_sent_at = ? "
                "WHERE notification_id = ? AND acknowledged_at IS NOT NULL AND acknowledgement_sent_at IS NULL",
                (at.isoformat(), notification_id),
            )

    def received_at(self, notification_ids: list[str]) -> dict[str, datetime]:
        """Return when each of `notification_ids` that has arrived was received."""
        found: dict[str, datetime] = {}
        for start in range(0, len(notification_ids), 500):
            chunk = notification_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            with self._db.transaction() as cursor:
                rows = cursor.execute(
                    f"SELECT notification_id, received_at FROM alerts WHERE notification_id IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
            for nid, received in rows:
                found[nid] = datetime.fromisoformat(received)
        return found

    def raw_rows(self) -> list[tuple[str, ...]]:
        """Every stored row as text (blobs decoded leniently), for disclosure checks over the whole database."""
        with self._db.transaction() as cursor:
            rows = cursor.execute("SELECT * FROM alerts").fetchall()
        return [tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _acknowledger(staff_id: str | None, role: str | None) -> Acknowledger | None:
    if staff_id is None or role is None:
        return None
    return Acknowledger(staff_id=staff_id, role=KeyAdultRole(role))


def _stored_alert(setting_urn: str, row: tuple[str, bytes, str, str | None, str | None, str | None],
                  opener: Opener) -> StoredAlert:
    nid, envelope, received, acknowledged_at, staff_id, role = row
    return StoredAlert(
        notification_id=nid,
        notification=opener(setting_urn, envelope),
        received_at=datetime.fromisoformat(received),
        acknowledged_at=datetime.fromisoformat(acknowledged_at) if acknowledged_at else None,
        acknowledged_by=_acknowledger(staff_id, role) if acknowledged_at else None,
    )

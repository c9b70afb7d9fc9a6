"""
The work queues of the non-school recipients (children's services, the DA hub, IDVAs, MARAC, health).

Each queue holds the referrals the router made to one agency under one
agreement clause.  The design follows the school inbox (`inbox.store`) for the
same reasons:

- (recipient, referral id) is the primary key, and the router's referral ids
  are deterministic, so a redelivered referral is recognised and a
  practitioner never sees the same referral twice;
- referrals are stored as the sealed envelopes they arrived in and opened only
  when read, so the queue holds no plaintext and an erasure (the subjects' data
  keys destroyed) reaches it like every other copy: the item stays listed, as
  erased, without any of its data.

A practitioner *takes* a referral to say "this is ours now".  Taking is
recorded once (the first taker and time win), and the receipt that tells the
sender is tracked separately (`receipt_sent_at`) so a receipt that failed to
publish is sent later rather than lost, and one already sent is never sent
again (see `safebus.consumers.queues.receipts`).

The queues live in a SQLite file, or in a PostgreSQL database several hosts
share (`QueueStore` takes either location); their schema versions are the
``queues-`` migrations (`safebus.consumers.migrations`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.consumers.migrations import MIGRATIONS
from safebus.errors import SafebusError
from safebus.migrations import Schema
from safebus.schemas.sharing import AnyReferral, Person, ReleasedValue
from safebus.sql_store import Database

__all__ = [
    "QUEUES_SCHEMA", "NotInQueue", "Opener", "QueueItem", "QueueStore", "ReferralArrival", "TakenReferral",
    "format_released",
]

QUEUES_SCHEMA = Schema("queues", MIGRATIONS)
"""The queues' schema versions (no column was ever added on open, so no file needs more than the baseline)."""

Opener = Callable[[str, bytes], AnyReferral | None]
"""Opens a stored envelope for a recipient agency id; None when it can no longer be read (erased)."""


class NotInQueue(SafebusError):
    """A referral id that is not in this recipient's queue (a typo, or another agency's referral)."""


@dataclass(frozen=True, kw_only=True)
class ReferralArrival:
    """A verified referral as it arrived, with the envelope that carried it."""

    referral_id: str
    recipient_id: str
    event_id: str
    """The referral event's id: the receipt names it as its correlation id."""
    envelope: bytes


@dataclass(frozen=True, kw_only=True)
class TakenReferral:
    """A taken referral whose receipt has not been published yet: everything the receipt needs, no payload."""

    recipient_id: str
    referral_id: str
    event_id: str
    taken_at: datetime
    taken_by: str


def _person(person: Person) -> str:
    """A released person as one phrase: name first, then every other released attribute."""
    name = " ".join(str(person[k]) for k in ("first_name", "surname") if person.get(k))
    rest = ", ".join(f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in person.items()
                     if k not in {"first_name", "surname"} and v is not None)
    return f"{name or '(unnamed)'}" + (f" ({rest})" if rest else "")


def _scalar(value: str | int | bool | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "(not recorded)" if value is None else str(value)


def format_released(value: ReleasedValue) -> str:
    """One released value as text: people joined by semicolons, booleans as yes/no."""
    if isinstance(value, tuple):
        return "; ".join(_person(p) for p in value) if value else "(none)"
    return _scalar(value)


@dataclass(frozen=True, kw_only=True)
class QueueItem:
    """One referral as the queue shows it; `referral` is None once its subjects' data is erased."""

    referral_id: str
    recipient_id: str
    referral: AnyReferral | None
    received_at: datetime
    taken_at: datetime | None
    taken_by: str | None

    @property
    def status(self) -> str:
        """Awaiting, or who took it and when."""
        if self.taken_at is None:
            return "awaiting a practitioner"
        return f"taken by {self.taken_by} at {self.taken_at:%Y-%m-%d %H:%M %Z}"

    def describe(self) -> list[str]:
        """
        Lines for a practitioner: why they were told (agreement, version, clause, purpose), then exactly what.

        Only the fields in `released` are listed: they are the fields the
        clause releases, so the display cannot show more than the agreement allows.
        """
        head = f"[{self.received_at:%Y-%m-%d %H:%M}] referral {self.referral_id}"
        r = self.referral
        if r is None:
            return [head, "  (this referral's data has been erased)", f"  status: {self.status}"]
        return [
            head,
            f"  agreement {r.agreement_id} v{r.agreement_version} clause {r.clause}",
            f"  purpose: {r.purpose}",
            *(f"  {name}: {format_released(value)}" for name, value in r.released.items()),
            f"  status: {self.status}",
        ]


class QueueStore:
    """The queue database; one database can hold the queues of several recipient agencies."""

    def __init__(self, location: Path | str) -> None:
        """Open (creating if needed, and upgrading) the queues at `location`: a SQLite path or a PostgreSQL URL."""
        self._db = Database(location, QUEUES_SCHEMA)

    def store_many(self, arrivals: Sequence[ReferralArrival], *, received_at: datetime) -> int:
        """Store `arrivals` in one transaction; return how many were new (redeliveries are ignored)."""
        with self._db.transaction() as cursor:
            return cursor.executemany(
                "INSERT INTO referrals (recipient_id, referral_id, event_id, received_at, envelope) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (recipient_id, referral_id) DO NOTHING",
                [(a.recipient_id, a.referral_id, a.event_id, received_at.isoformat(), a.envelope) for a in arrivals],
            ).rowcount

    def items(self, recipient_id: str, opener: Opener) -> list[QueueItem]:
        """Return the recipient's queue, oldest first, each referral opened with `opener`."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(
                "SELECT referral_id, envelope, received_at, taken_at, taken_by FROM referrals WHERE recipient_id = ? "
                "ORDER BY received_at, referral_id",
                (recipient_id,),
            ).fetchall()
        return [
            QueueItem(
                referral_id=row[0], recipient_id=recipient_id, referral=opener(recipient_id, row[1]),
                received_at=datetime.fromisoformat(row[2]),
                taken_at=datetime.fromisoformat(row[3]) if row[3] else None, taken_by=row[4],
            )
            for row in rows
        ]

    def referral_ids(self, recipient_id: str) -> set[str]:
        """The ids in the recipient's queue, without opening anything (for progress checks)."""
        with self._db.transaction() as cursor:
            rows = cursor.execute("SELECT referral_id FROM referrals WHERE recipient_id = ?",
                                  (recipient_id,)).fetchall()
        return {row[0] for row in rows}

    def take(self, recipient_id: str, referral_id: str, staff_id: str, at: datetime) -> bool:
        """
        Record that `staff_id` took the referral at `at`; return False if it was already taken.

        The first take stands (a second practitioner cannot overwrite who took
        it or when), which is what makes the receipt's facts stable.  Raises
        NotInQueue when the referral is not in this recipient's queue, so one
        agency can never take another's referral.
        """
        with self._db.transaction() as cursor:
            if cursor.execute(
                "UPDATE referrals SET taken_at = ?, taken_by = ? "
                "WHERE recipient_id = ? AND referral_id = ? AND taken_at IS NULL",
                (at.isoformat(), staff_id, recipient_id, referral_id),
            ).rowcount == 1:
                return True
            exists = cursor.execute("SELECT 1 FROM referrals WHERE recipient_id = ? AND referral_id = ?",
                                    (recipient_id, referral_id)).fetchone()
        if exists is None:
            raise NotInQueue(f"referral {referral_id} is not in the queue of {recipient_id}")
        return False

    def receipts_due(self, recipient_id: str) -> list[TakenReferral]:
        """Taken referrals of the recipient whose receipt has not been published, oldest take first."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(
                "SELECT referral_id, event_id, taken_at, taken_by FROM referrals "
                "WHERE recipient_id = ? AND taken_at IS NOT NULL AND receipt_sent_at IS NULL "
                "ORDER BY taken_at, referral_id",
                (recipient_id,),
            ).fetchall()
        return [
            TakenReferral(recipient_id=recipient_id, referral_id=row[0], event_id=row[1],
                          taken_at=datetime.fromisoformat(row[2]), taken_by=row[3])
            for row in rows
        ]

    def receipts_sent(self, recipient_id: str, referral_ids: Iterable[str], *, at: datetime) -> None:
        """Record that the receipts of `referral_ids` are on the bus, so they are never sent again."""
        with self._db.transaction() as cursor:
            cursor.executemany(
                "UPDATE referrals SET receipt_sent_at = ? WHERE recipient_id = ? AND referral_id = ? "
                "AND receipt_sent_at IS NULL",
                [(at.isoformat(), recipient_id, rid) for rid in referral_ids],
            )

    def raw_rows(self) -> list[tuple[str, ...]]:
        """Every stored row as text (blobs decoded leniently), for disclosure checks over the whole database."""
        with self._db.transaction() as cursor:
            rows = cursor.execute("SELECT * FROM referrals").fetchall()
        return [tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()

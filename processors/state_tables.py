"""
The router's state in partitioned tables: what a deciding worker holds for the subjects of its partitions.

ADR 0018: each subject's enrolment, consent, incident history and MARAC
referrals live in a Faust table keyed by the subject's token, co-partitioned
with the routing tasks about that subject, so one worker reads and writes a
subject's state one task after another with no lock.  This module is that
store without Faust: it works over plain mappings (Faust's ``table.data``) and
hands every changed value to a `ChangelogWriter`, which in the router sends it
to the table's changelog for the current partition and keeps the future so
the batch awaits it with its shares (a refused changelog write then stops the
worker, as a refused share does).  ``table[key] = value`` is not used: Faust
would send that record with ``send_soon`` and report a failure only in a
callback, after the offset could already be committed.

The merge rules are `safebus.processors.ordering`'s, shared with the SQLite
store, so the same property tests hold for both.  Values are JSON (what the
changelog carries): a child's changes at its latest ordering point; a
subject's standing change per purpose; a victim's incidents and MARAC
referrals by event id.  Every write is idempotent and independent of arrival
order, so a redelivered task, or a changelog record whose input is redelivered
after a crash, changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import asdict
from datetime import date, datetime
from typing import Any, Protocol

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

__all__ = ["LEGACY_EVENT", "TABLES", "ChangelogWriter", "TableRouterState"]

TABLES = ("enrolment", "consent", "incidents", "marac")
"""The router's tables (Faust names their changelogs ``{app id}-{name}-changelog``)."""

LEGACY_EVENT = "legacy"
"""The event id of a MARAC referral whose event is not known (carried over from the single store): never excluded."""

_Table = MutableMapping[str, Any]


class ChangelogWriter(Protocol):
    """Makes one changed table value durable (in the router: a changelog record awaited with the batch)."""

    def __call__(self, table: str, key: str, value: Any) -> None:
        """Record that `table[key]` is now `value`."""
        ...


class TableRouterState:
    """`RouterState` over one mapping per table in `TABLES`, writing every change through `changelog`."""

    def __init__(self, tables: Mapping[str, _Table], changelog: ChangelogWriter) -> None:
        """Read and write `tables` (the keys of `TABLES`); every write is also handed to `changelog`."""
        missing = sorted(set(TABLES) - set(tables))
        if missing:
            raise ValueError(f"TableRouterState needs the tables {', '.join(missing)}")
        self._tables = tables
        self._changelog = changelog

    def _put(self, table: str, key: str, value: Any) -> None:
        if self._tables[table].get(key) == value:
            return  # a redelivery: nothing changed, nothing to log
        self._tables[table][key] = value
        self._changelog(table, key, value)

    def enrolment(self, child_token: str) -> str | None:
        """See `RouterState` (`UNRESOLVED` while same-instant changes conflict)."""
        return resolve_enrolment(self.enrolment_changes(child_token))

    def enrolment_changes(self, child_token: str) -> list[EnrolmentChange]:
        """Every change to a child's enrolment at its latest ordering point (what decides the setting)."""
        return [EnrolmentChange(**change) for change in self._tables["enrolment"].get(child_token, [])]

    def consent(self, subject_token: str, purpose: str) -> str:
        """See `RouterState`."""
        change = self.consent_change(subject_token, purpose)
        return change.status if change else "none"

    def consent_change(self, subject_token: str, purpose: str) -> ConsentChange | None:
        """The change that stands for a subject's consent to a purpose, if any."""
        change = self._tables["consent"].get(subject_token, {}).get(purpose)
        return ConsentChange(**change) if change else None

    def incidents_since(self, subject_token: str, since: date) -> int:
        """See `RouterState`."""
        days = self._tables["incidents"].get(subject_token, {}).values()
        return sum(1 for day in days if day >= since.isoformat())

    def last_marac_referral(self, subject_token: str, *, excluding_event: str | None = None) -> date | None:
        """See `RouterState`."""
        referrals = self._tables["marac"].get(subject_token, {})
        days = [day for event_id, day in referrals.items() if event_id != excluding_event]
        return date.fromisoformat(max(days)) if days else None

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """See `RouterState`."""
        known = self._tables["incidents"].get(subject_token, {})
        if event_id not in known:
            self._put("incidents", subject_token, {**known, event_id: day.isoformat()})

    def record_marac_referral(self, subject_token: str, day: date, *, event_id: str | None = None) -> None:
        """See `RouterState`; a referral of unknown event is kept under `LEGACY_EVENT`, latest day."""
        known = self._tables["marac"].get(subject_token, {})
        key = event_id or LEGACY_EVENT
        self._put("marac", subject_token, {**known, key: max(known.get(key, ""), day.isoformat())})

    def set_enrolment(self, child_token: str, setting: str | None, at: datetime, *,
                      recorded_at: datetime | None = None, event_id: str | None = None,
                      previous: str | None = None) -> Conflict | None:
        """Merge a change of a child's setting as `SqliteRouterState.set_enrolment` does; the conflict, if any."""
        change = EnrolmentChange(setting=setting, previous=previous, occurred_at=instant(at),
                                 recorded_at=instant(recorded_at or at),
                                 event_id=event_id or anonymous_id("enrolment", child_token, setting, previous,
                                                                   instant(at)))
        latest, conflict = merge_enrolment(self.enrolment_changes(child_token), change, child_token)
        self._put("enrolment", child_token, [asdict(c) for c in latest])
        return conflict

    def set_consent(self, subject_token: str, purpose: str, status: str, at: datetime, *,
                    recorded_at: datetime | None = None, event_id: str | None = None) -> Conflict | None:
        """Merge a consent status as `SqliteRouterState.set_consent` does; the conflict it met, if any."""
        change = ConsentChange(status=status, occurred_at=instant(at), recorded_at=instant(recorded_at or at),
                               event_id=event_id or anonymous_id("consent", subject_token, purpose, status,
                                                                 instant(at)))
        stands, conflict = merge_consent(self.consent_change(subject_token, purpose), change, subject_token,
                                         purpose)
        known = self._tables["consent"].get(subject_token, {})
        self._put("consent", subject_token, {**known, purpose: asdict(stands)})
        return conflict

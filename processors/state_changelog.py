"""
The router's state, replicated through a compacted changelog topic (what a Faust table's changelog does).

`SqliteRouterState` answers the rules' questions fast and locally; this
subclass also records every change it makes, and the handler publishes those
changes to ``<prefix>.router.state`` as outputs of the same event — so they are
acknowledged by the broker before the event's offset is committed, exactly
like the shares and decisions it caused.  At start-up the router replays the
topic into its local store, so a lost disk, a new machine or a second
instance taking over starts with the same enrolments, consent, incident
history and MARAC referrals.

Every record is the whole state of its key *after* the change — the changes at
a child's latest enrolment ordering point, the consent change that stands —
not the event that came in.  So the topic's compaction, which keeps the last
record per key, keeps exactly what the store holds; and since the store
merges changes in the total order of `safebus.processors.ordering` (order-
and repeat-independent), replaying the changelog any number of times, in any
order, into any state gives the same answers as the router that wrote it.  A
late, older event re-publishes the state it did not change, never itself.
The topic is compacted by key: enrolment per child, consent per (subject,
purpose), MARAC referral per subject, and one record per incident in a
subject's history.  Records hold pseudonymous tokens, URNs, dates and event
ids only.  Records of format 1 (one change per record, ``at`` only) are still
read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from safebus.bounded_json import JsonRefused, loads_object
from safebus.jcs import canonical_json
from safebus.logs import get_logger
from safebus.processors.state import Conflict, SqliteRouterState
from safebus.records import Output, Record

__all__ = ["CHANGE_FORMAT", "ChangelogRouterState", "restore"]

_log = get_logger("processor.changelog")

CHANGE_FORMAT = "safebus-router-state/2"
_FORMAT_1 = "safebus-router-state/1"


class ChangelogRouterState(SqliteRouterState):
    """A router state whose every change is also queued for the changelog topic."""

    def __init__(self, path: Path, *, topic: str) -> None:
        """Open the local store at `path`; changes will be published to `topic`."""
        super().__init__(path)
        self.topic = topic
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """See `RouterState`; also queued for the changelog."""
        super().record_incident(subject_token, event_id, day)
        self._queue(f"incident|{subject_token}|{event_id}",
                    {"op": "incident", "subject": subject_token, "event_id": event_id, "day": day.isoformat()})

    def record_marac_referral(self, subject_token: str, day: date, *, event_id: str | None = None) -> None:
        """See `RouterState`; also queued for the changelog (one record per referral, by event, when known)."""
        super().record_marac_referral(subject_token, day, event_id=event_id)
        if event_id is None:
            latest = self.last_marac_referral(subject_token) or day
            self._queue(f"marac|{subject_token}", {"op": "marac", "subject": subject_token, "day": latest.isoformat()})
        else:
            self._queue(f"marac|{subject_token}|{event_id}", {"op": "marac", "subject": subject_token,
                                                              "event_id": event_id, "day": day.isoformat()})

    def set_enrolment(self, child_token: str, setting: str | None, at: datetime, *,
                      recorded_at: datetime | None = None, event_id: str | None = None,
                      previous: str | None = None) -> Conflict | None:
        """See `SqliteRouterState`; the child's enrolment changes that now stand are queued for the changelog."""
        conflict = super().set_enrolment(child_token, setting, at, recorded_at=recorded_at, event_id=event_id,
                                         previous=previous)
        changes = [{"setting": c.setting, "previous": c.previous, "at": c.occurred_at, "recorded_at": c.recorded_at,
                    "event_id": c.event_id} for c in self.enrolment_changes(child_token)]
        self._queue(f"enrolment|{child_token}", {"op": "enrolment", "child": child_token, "changes": changes})
        return conflict

    def set_consent(self, subject_token: str, purpose: str, status: str, at: datetime, *,
                    recorded_at: datetime | None = None, event_id: str | None = None) -> Conflict | None:
        """See `SqliteRouterState`; the consent change that now stands is queued for the changelog."""
        conflict = super().set_consent(subject_token, purpose, status, at, recorded_at=recorded_at,
                                       event_id=event_id)
        stands = self.consent_change(subject_token, purpose)
        assert stands is not None  # a write always leaves a change standing
        self._queue(f"consent|{subject_token}|{purpose}", {
            "op": "consent", "subject": subject_token, "purpose": purpose, "status": stands.status,
            "at": stands.occurred_at, "recorded_at": stands.recorded_at, "event_id": stands.event_id})
        return conflict

    def _queue(self, key: str, change: dict[str, Any]) -> None:
        self._pending.append((key, {"format": CHANGE_FORMAT, **change}))

    def drain(self) -> list[Output]:
        """The changes made since the last drain, as records for the changelog topic."""
        pending, self._pending = self._pending, []
        return [Output(topic=self.topic, key=key.encode(), value=canonical_json(change))
                for key, change in pending]


def restore(state: SqliteRouterState, records: Iterable[Record]) -> int:
    """
    Merge changelog records into `state` (idempotently, in any order); return how many were applied.

    A record that is not a change this router wrote (anyone with access can
    write to the topic) is skipped with a logged error naming its offset, never
    raised: a hostile record must not stop every later start-up (docs/adr/0003).
    """
    applied = 0
    for record in records:
        try:
            change = loads_object(record.value)
        except JsonRefused:
            continue
        if change.get("format") not in (CHANGE_FORMAT, _FORMAT_1):
            continue
        try:
            applied += _apply(state, change)
        except Exception as exc:  # noqa: BLE001 - one record must never stop the router's start-up
            _log.error("changelog_record_skipped", topic=record.topic, partition=record.partition,
                       offset=record.offset, error=type(exc).__name__)
    return applied


def _apply(state: SqliteRouterState, change: dict[str, Any]) -> int:
    op = change.get("op")
    if op == "incident":
        SqliteRouterState.record_incident(state, change["subject"], change["event_id"],
                                          date.fromisoformat(change["day"]))
    elif op == "marac":
        SqliteRouterState.record_marac_referral(state, change["subject"], date.fromisoformat(change["day"]),
                                                event_id=change.get("event_id"))  # none in older records
    elif op == "enrolment":
        for c in change.get("changes", [change]):  # format 1: the record is the one change
            SqliteRouterState.set_enrolment(
                state, change["child"], c["setting"], datetime.fromisoformat(c["at"]),
                recorded_at=_instant(c.get("recorded_at")), event_id=c.get("event_id"), previous=c.get("previous"))
    elif op == "consent":
        SqliteRouterState.set_consent(state, change["subject"], change["purpose"], change["status"],
                                      datetime.fromisoformat(change["at"]),
                                      recorded_at=_instant(change.get("recorded_at")),
                                      event_id=change.get("event_id"))
    else:
        return 0
    return 1


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None

"""
Operation Encompass deadlines: every notification tracked to acknowledgement, or escalated.

The standard is that a setting's Key Adult knows before the next school day
starts.  This monitor makes that measurable and enforced, from audit facts
alone (so it holds no personal data and can run beside the audit log):

- a sharing decision under the Operation Encompass agreement that shares (or
  defers to the MASH education desk) starts tracking its notification, with
  ``due_by`` = the setting's next session start after the bus shares the
  alert (the router's decision time, seconds before delivery);
- the police's own clock is measured too: shared before the start of the
  setting's next school day after the *incident* (``police_due_by``), or late
  by so many minutes, on the deadline fact and in the on-time report;
- ``audit.delivered`` marks when it reached the setting's inbox and
  ``audit.acknowledged`` when a Key Adult or deputy read it;
- time-driven steps (`due_steps`) fire exactly once each, only while nobody has
  acknowledged: the alert is surfaced again before the first session back when
  it arrived while the setting was closed; the deputies are alerted a lead time
  before ``due_by``; at ``due_by`` the local authority's education
  safeguarding officer is told.  A child whose setting is unknown is recorded as
  gone to the MASH education desk with the same deadline; an electively
  home-educated child's notification is sent to the LA's elective home
  education officer.  A step with nobody to tell (a setting with no deputies)
  is recorded as such and the next step is taken at once: no escalation ends
  in silence.

Each step becomes an ``audit.escalated`` fact with a deterministic id, so a
monitor restarted after a crash re-fires nothing that was recorded and misses
nothing that was not.  The policy (lead times, contacts) is a versioned data
file, ``consumers/encompass/policy.toml``, read by
`safebus.consumers.encompass.delivery_policy`; the figures computed from what
is tracked are `safebus.consumers.encompass.on_time`.

What is tracked lives in a SQLite file, or in a PostgreSQL database several
hosts share (`EncompassMonitor`'s `database`); its schema versions are the
``monitor-`` migrations (`safebus.consumers.migrations`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from safebus.clock import utc_now
from safebus.consumers.encompass.calendars import CalendarBook, SettingCalendar
from safebus.consumers.encompass.delivery_policy import DeliveryPolicy
from safebus.consumers.migrations import MIGRATIONS
from safebus.logs import get_logger
from safebus.migrations import Schema
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import DeadlineSet, Escalated, EscalationStep
from safebus.sql_dialects import RewritingCursor
from safebus.sql_store import Database

__all__ = [
    "ENCOMPASS_AGREEMENT",
    "MONITOR_PRODUCER",
    "MONITOR_SCHEMA",
    "NOTIFYING_EVENTS",
    "EncompassMonitor",
    "Step",
    "Tracked",
]

_log = get_logger("encompass.monitor")

ENCOMPASS_AGREEMENT = "operation-encompass"
NOTIFYING_EVENTS = frozenset({"police.domestic-abuse-incident", "encompass.notification"})
MONITOR_PRODUCER = "safebus-encompass-monitor"
_STEP_NAMESPACE = uuid.UUID("0b6f1d8e-3c2a-4e57-9a1d-7e2f4c5b6a90")



MONITOR_SCHEMA = Schema("monitor", MIGRATIONS, legacy_columns={"tracked": ("incident_at TEXT", "police_due_by TEXT")})
"""
The monitor's schema versions: ``tracked`` (desk: setting | mash | officer | transfer; `settled` once every
scheduled step is taken), the steps taken, deliveries and acknowledgements as they arrive (the audit topic has
several partitions, so one may be read before the decision it follows), and the steps that reached nobody (the
next is brought forward).  The columns are those the first release lacked, which a file of its gains.
"""


@dataclass(frozen=True, kw_only=True)
class Tracked:
    """One notification's delivery record."""

    notification_id: str
    desk: str
    recipient_id: str | None
    setting_urn: str | None
    subject: str | None
    recorded_at: datetime
    due_by: datetime
    calendar_version: str
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    incident_at: datetime | None = None
    police_due_by: datetime | None = None

    @property
    def acknowledged_on_time(self) -> bool:
        """Whether a Key Adult acknowledged before the deadline."""
        return self.acknowledged_at is not None and self.acknowledged_at <= self.due_by

    @property
    def shared_late_minutes(self) -> int | None:
        """Minutes after the police deadline the bus shared it: 0 on time, None if the incident time is unknown."""
        if self.police_due_by is None:
            return None
        return max(0, int((self.recorded_at - self.police_due_by) // timedelta(minutes=1)))


@dataclass(frozen=True, kw_only=True)
class Step:
    """A step that is due: what, for which notification, from when."""

    tracked: Tracked
    step: EscalationStep
    due_at: datetime


_TIME_FIELDS = ("recorded_at", "confirmed_at", "delivered_at", "acknowledged_at", "incident_at")
_ID_FIELDS = ("transfer_id", "output_id", "notification_id", "staff_id", "step", "event_id", "recipient")


def _check_types(fact: dict[str, Any]) -> None:
    """
    Raise ValueError unless the fields the monitor stores have the types it reads back.

    A time stored as anything but an ISO time with a zone would break every
    later tick (they are parsed again then), so it is refused on the way in.
    """
    for name in _TIME_FIELDS:
        value = fact.get(name)
        if value is not None and (not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is None):
            raise ValueError(f"{name} is not a time with a zone")
    for name in _ID_FIELDS:
        if fact.get(name) is not None and not isinstance(fact[name], str):
            raise ValueError(f"{name} is not text")


def _dt(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value is not None else None


class EncompassMonitor:
    """Tracks Operation Encompass notifications from audit facts and says which escalation steps are due."""

    def __init__(self, path: Path, *, calendars: CalendarBook, policy: DeliveryPolicy,
                 urn_of: Mapping[str, str], database: str | None = None) -> None:
        """
        Open (creating and upgrading) what is tracked: in the SQLite file `path`, or in `database` when given.

        `database` is a shared database's URL (``postgresql://…``); `path`
        then stores nothing but still names this monitor's place on its host.
        `urn_of` maps school agency ids to their URN (from the directory; a
        live mapping sees new schools).
        """
        self.path = path
        self._db = Database(database or path, MONITOR_SCHEMA)
        self.calendars = calendars
        self.policy = policy
        self.urn_of = urn_of
        self._new: list[str] = []

    def calendar(self, urn: str | None) -> SettingCalendar:
        """The setting's calendar; the partnership default when the setting is unknown."""
        return self.calendars.for_setting(urn) if urn else self.calendars.default_calendar

    def observe(self, facts: Iterable[dict[str, Any]], *,
                refused: list[tuple[int, Exception]] | None = None) -> int:
        """
        Apply audit facts (as JSON objects); return how many changed what is tracked.

        With `refused`, a fact that raises is undone on its own (a savepoint)
        and listed there with its index, and the others still apply: one
        unusable fact must not stop the monitor (docs/adr/0003).
        """
        changed = 0
        with self._db.transaction(exclusive="tracked") as cursor:
            for index, fact in enumerate(facts):
                if refused is None:
                    changed += self._observe(cursor, fact)
                    continue
                cursor.execute("SAVEPOINT fact")
                started = len(self._new)
                try:
                    changed += self._observe(cursor, fact)
                    for item in self._new[started:]:  # what is stored must be stateable, now and at every tick
                        self._deadline_fact(item, at=utc_now())
                except Exception as exc:  # noqa: BLE001 - reported to the caller, which dead-letters it
                    cursor.execute("ROLLBACK TO SAVEPOINT fact")
                    del self._new[started:]
                    refused.append((index, exc))
                cursor.execute("RELEASE SAVEPOINT fact")
        return changed

    def _observe(self, cursor: RewritingCursor, fact: dict[str, Any]) -> int:
        _check_types(fact)
        kind = fact.get("event_type")
        if kind == "audit.sharing-decision":
            return self._track(cursor, fact)
        if kind == "audit.enrolment-moved":
            return self._track_transfer(cursor, fact)
        if kind == "audit.file-transfer-confirmed":
            cursor.execute("INSERT INTO acknowledgements VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (fact["transfer_id"], fact["confirmed_at"], fact["staff_id"]))
            return cursor.execute(
                "UPDATE tracked SET acknowledged_at = ?, acknowledged_by = ? WHERE notification_id = ? "
                "AND acknowledged_at IS NULL", (fact["confirmed_at"], fact["staff_id"], fact["transfer_id"]),
            ).rowcount
        if kind == "audit.delivered":
            cursor.execute("INSERT INTO deliveries VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (fact["output_id"], fact["delivered_at"]))
            return cursor.execute("UPDATE tracked SET delivered_at = ? WHERE notification_id = ? "
                                  "AND delivered_at IS NULL", (fact["delivered_at"], fact["output_id"])).rowcount
        if kind == "audit.acknowledged":
            cursor.execute("INSERT INTO acknowledgements VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (fact["notification_id"], fact["acknowledged_at"], fact["staff_id"]))
            return cursor.execute(
                "UPDATE tracked SET acknowledged_at = ?, acknowledged_by = ? WHERE notification_id = ? "
                "AND acknowledged_at IS NULL", (fact["acknowledged_at"], fact["staff_id"], fact["notification_id"]),
            ).rowcount
        if kind == "audit.escalated":
            if fact.get("nobody_to_notify"):
                cursor.execute("INSERT INTO unreached VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                               (fact["notification_id"], fact["step"], fact["recorded_at"]))
            return cursor.execute("INSERT INTO steps VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                  (fact["notification_id"], fact["step"], fact["recorded_at"])).rowcount
        return 0

    def _track(self, cursor: RewritingCursor, fact: dict[str, Any]) -> int:
        if fact.get("agreement_id") != ENCOMPASS_AGREEMENT or fact.get("outcome") not in ("shared", "deferred"):
            return 0
        if fact.get("about_event_type", "police.domestic-abuse-incident") not in NOTIFYING_EVENTS:
            return 0  # e.g. an acknowledgement passed on to the police: not a notification with a deadline
        if not fact.get("output_id"):
            return 0
        recipient = fact.get("recipient")
        if fact["recipient_kind"] == "school":
            desk, urn = "setting", self.urn_of.get(str(recipient))
        elif fact["outcome"] == "deferred":
            desk, urn = "mash", None
        else:
            desk, urn = "officer", None
        recorded_at = datetime.fromisoformat(fact["recorded_at"])
        calendar = self.calendar(urn)
        due_by = calendar.due_by(recorded_at)
        incident_at = _dt(fact.get("incident_at"))
        police_due_by = calendar.due_by(incident_at) if incident_at is not None else None
        subjects = fact.get("subjects") or [None]
        nid = fact["output_id"]
        delivered = cursor.execute("SELECT delivered_at FROM deliveries WHERE notification_id = ?",
                                   (nid,)).fetchone()
        acked = cursor.execute("SELECT acknowledged_at, acknowledged_by FROM acknowledgements "
                               "WHERE notification_id = ?", (nid,)).fetchone() or (None, None)
        inserted = cursor.execute(
            "INSERT INTO tracked (notification_id, desk, recipient_id, setting_urn, subject, recorded_at, "
            "due_by, calendar_version, delivered_at, acknowledged_at, acknowledged_by, incident_at, police_due_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
            (nid, desk, recipient, urn, subjects[0], recorded_at.isoformat(), due_by.isoformat(),
             calendar.calendar_version, delivered[0] if delivered else None, *acked,
             incident_at.isoformat() if incident_at else None, police_due_by.isoformat() if police_due_by else None),
        ).rowcount
        if inserted:
            self._new.append(nid)
        return inserted

    def _track_transfer(self, cursor: RewritingCursor, fact: dict[str, Any]) -> int:
        """
        A child left a setting that holds their Operation Encompass history: it must send the file on.

        Only moves away from a partnership school whose Encompass alerts this
        monitor tracked for the child start the clock: that history is what the
        bus knows must travel (other child-protection records are the
        schools' own business).  The deadline is the end of the fifth school
        day after the move (or after the bus learnt of it, if later).
        """
        urn, subjects = fact.get("previous_setting_urn"), fact.get("subjects") or []
        if not urn or not subjects:
            return 0
        history = cursor.execute("SELECT 1 FROM tracked WHERE desk = 'setting' AND setting_urn = ? AND subject = ?",
                                 (urn, subjects[0])).fetchone()
        if history is None:
            return 0
        recorded_at = datetime.fromisoformat(fact["recorded_at"])
        calendar = self.calendar(urn)
        start = max(date.fromisoformat(fact["effective_date"]), recorded_at.astimezone(calendar.tz).date())
        last_day = calendar.add_school_days(start, self.policy.file_transfer_school_days)
        due_by = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=calendar.tz).astimezone(UTC)
        confirmed = cursor.execute("SELECT acknowledged_at, acknowledged_by FROM acknowledgements "
                                   "WHERE notification_id = ?", (fact["event_id"],)).fetchone() or (None, None)
        inserted = cursor.execute(
            "INSERT INTO tracked (notification_id, desk, recipient_id, setting_urn, subject, recorded_at, "
            "due_by, calendar_version, acknowledged_at, acknowledged_by) "
            "VALUES (?, 'transfer', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
            (fact["event_id"], fact.get("new_setting_urn"), urn, subjects[0], recorded_at.isoformat(),
             due_by.isoformat(), calendar.calendar_version, *confirmed),
        ).rowcount
        if inserted:
            self._new.append(fact["event_id"])
        return inserted

    def pending_transfers(self, urn: str) -> list[Tracked]:
        """Child-protection files `urn` still has to send on (the new setting's URN is in `recipient_id`)."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(f"SELECT {_COLUMNS} FROM tracked WHERE desk = 'transfer' AND setting_urn = ? "  # noqa: S608
                                  "AND acknowledged_at IS NULL ORDER BY due_by", (urn,)).fetchall()
        return [_tracked(row) for row in rows]

    def tracked(self, notification_id: str) -> Tracked | None:
        """One notification's record."""
        with self._db.transaction() as cursor:
            row = cursor.execute(f"SELECT {_COLUMNS} FROM tracked WHERE notification_id = ?",  # noqa: S608
                                 (notification_id,)).fetchone()
        return _tracked(row) if row else None

    def all(self) -> list[Tracked]:
        """Every tracked notification, oldest first."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(f"SELECT {_COLUMNS} FROM tracked ORDER BY recorded_at").fetchall()  # noqa: S608
        return [_tracked(row) for row in rows]

    def fired(self, notification_id: str) -> dict[EscalationStep, datetime]:
        """The steps already taken for a notification, with when."""
        with self._db.transaction() as cursor:
            rows = cursor.execute("SELECT step, fired_at FROM steps WHERE notification_id = ?",
                                  (notification_id,)).fetchall()
        return {EscalationStep(step): datetime.fromisoformat(at) for step, at in rows}

    def due_steps(self, now: datetime) -> list[Step]:
        """
        Steps whose time has come and that have not been taken, earliest first.

        Runs on every idle tick, so it reads only open items (unacknowledged and
        not yet settled) and their taken steps in two queries; an item whose
        every scheduled step has been taken is marked settled and not read again.
        """
        with self._db.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT {_COLUMNS} FROM tracked WHERE settled = 0 AND acknowledged_at IS NULL").fetchall()  # noqa: S608
            steps = cursor.execute(
                "SELECT s.notification_id, s.step FROM steps s JOIN tracked t ON t.notification_id = "
                "s.notification_id WHERE t.settled = 0 AND t.acknowledged_at IS NULL").fetchall()
            unreached_rows = cursor.execute("SELECT notification_id, step, at FROM unreached").fetchall()
        taken: dict[str, set[str]] = {}
        for nid, step in steps:
            taken.setdefault(nid, set()).add(step)
        unreached: dict[str, dict[str, datetime]] = {}
        for nid, step, at in unreached_rows:
            unreached.setdefault(nid, {})[step] = datetime.fromisoformat(at)
        due: list[Step] = []
        settled: list[tuple[str]] = []
        for row in rows:
            tracked = _tracked(row)
            fired = taken.get(tracked.notification_id, set())
            schedule = self._brought_forward(self._schedule(tracked), unreached.get(tracked.notification_id, {}))
            if all(step.value in fired for step, _ in schedule):
                settled.append((tracked.notification_id,))
                continue
            due.extend(Step(tracked=tracked, step=step, due_at=at) for step, at in schedule
                       if at <= now and step.value not in fired)
        if settled:
            with self._db.transaction() as cursor:
                cursor.executemany("UPDATE tracked SET settled = 1 WHERE notification_id = ?", settled)
        return sorted(due, key=lambda s: (s.due_at, s.tracked.notification_id))

    @staticmethod
    def _brought_forward(schedule: list[tuple[EscalationStep, datetime]],
                         unreached: dict[str, datetime]) -> list[tuple[EscalationStep, datetime]]:
        """The schedule with each step after one that reached nobody due when that was found."""
        moved: list[tuple[EscalationStep, datetime]] = []
        carry: datetime | None = None
        for step, at in sorted(schedule, key=lambda item: item[1]):
            at = min(at, carry) if carry is not None else at
            moved.append((step, at))
            if step.value in unreached:
                carry = unreached[step.value]
        return moved

    def next_step(self, step: Step) -> EscalationStep | None:
        """The step that follows `step` in its notification's schedule (None after the last)."""
        order = [s for s, _ in sorted(self._schedule(step.tracked), key=lambda item: item[1])]
        return order[order.index(step.step) + 1] if step.step in order and order[-1] is not step.step else None

    def _schedule(self, tracked: Tracked) -> list[tuple[EscalationStep, datetime]]:
        if tracked.desk == "officer":
            return [(EscalationStep.ELECTIVE_HOME_EDUCATION_OFFICER, tracked.recorded_at)]
        if tracked.desk == "transfer":
            return [(EscalationStep.FILE_TRANSFER_PROMPTED, tracked.recorded_at),
                    (EscalationStep.FILE_TRANSFER_OVERDUE, tracked.due_by)]
        if tracked.desk == "mash":
            return [(EscalationStep.MASH_EDUCATION_DESK, tracked.recorded_at)]
        if tracked.desk != "setting":
            return []
        steps = [(EscalationStep.DEPUTIES, tracked.due_by - self.policy.deputies_lead),
                 (EscalationStep.EDUCATION_SAFEGUARDING_OFFICER, tracked.due_by)]
        arrived = tracked.delivered_at
        if arrived is not None and self._waited_over_a_closure(tracked, arrived):
            steps.append((EscalationStep.RESURFACED, tracked.due_by - self.policy.resurface_lead))
        return steps

    def _waited_over_a_closure(self, tracked: Tracked, arrived: datetime) -> bool:
        """Whether a whole calendar day passes between arrival and the deadline (a weekend, a holiday)."""
        zone = self.calendar(tracked.setting_urn).tz
        return (tracked.due_by.astimezone(zone).date() - arrived.astimezone(zone).date()).days > 1

    def new_deadlines(self, *, at: datetime) -> list[DeadlineSet]:
        """The deadline facts of everything that started being tracked since the last call (ids fixed per item)."""
        new, self._new = self._new, []
        facts = []
        for item in new:
            try:
                fact = self._deadline_fact(item, at=at)
            except ValueError as exc:  # stored before facts were checked on the way in: never stop the monitor
                _log.error("deadline_fact_unstateable", notification_id=item[:100], error=type(exc).__name__)
                continue
            if fact is not None:
                facts.append(fact)
        return facts

    def _deadline_fact(self, item: str, *, at: datetime) -> DeadlineSet | None:
        """The deadline fact of tracked `item`; raises ValidationError if what is stored cannot be stated."""
        tracked = self.tracked(item)
        if tracked is None:
            return None
        return DeadlineSet(
            **event_metadata(DeadlineSet, producer=MONITOR_PRODUCER, occurred_at=at, recorded_at=at,
                             event_id=str(uuid.uuid5(_STEP_NAMESPACE, f"{item}\x1fdeadline")),
                             subjects=(tracked.subject,) if tracked.subject else ()),
            notification_id=item, setting_urn=tracked.setting_urn, desk=tracked.desk, due_by=tracked.due_by,
            calendar_version=tracked.calendar_version, incident_at=tracked.incident_at,
            police_due_by=tracked.police_due_by,
            shared_at=tracked.recorded_at if tracked.desk != "transfer" else None,
            shared_late_minutes=tracked.shared_late_minutes,
        )

    def announce_again(self, notification_ids: Iterable[str]) -> None:
        """Return deadlines whose facts could not be published to the next `new_deadlines` (same ids)."""
        self._new[:0] = [n for n in notification_ids if n not in self._new]

    def step_fact(self, step: Step, *, at: datetime, notified: tuple[str, ...],
                  reached_nobody: bool | None = None) -> Escalated:
        """
        The audit fact for a step taken (its id fixed by notification and step, so it is logged once).

        With nobody notified (`reached_nobody`, by default: `notified` is empty)
        it says so, and names the step taken at once instead.
        """
        nobody = not notified if reached_nobody is None else reached_nobody
        fact_id = str(uuid.uuid5(_STEP_NAMESPACE, f"{step.tracked.notification_id}\x1f{step.step.value}"))
        return Escalated(
            **event_metadata(Escalated, producer=MONITOR_PRODUCER, occurred_at=at, recorded_at=at, event_id=fact_id,
                             subjects=(step.tracked.subject,) if step.tracked.subject else ()),
            notification_id=step.tracked.notification_id, setting_urn=step.tracked.setting_urn, step=step.step,
            due_by=step.tracked.due_by, notified=notified, nobody_to_notify=nobody,
            moved_to=self.next_step(step) if nobody else None,
        )

    def mark_fired(self, step: Step, *, at: datetime, reached_nobody: bool = False) -> None:
        """
        Remember that `step` was taken (the audit fact makes it durable across machines).

        `reached_nobody` brings the next step forward to now.
        """
        with self._db.transaction() as cursor:
            if reached_nobody:
                cursor.execute("INSERT INTO unreached VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                               (step.tracked.notification_id, step.step.value, at.isoformat()))
            cursor.execute("INSERT INTO steps VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (step.tracked.notification_id, step.step.value, at.isoformat()))

    def close(self) -> None:
        """Close the database."""
        self._db.close()


_COLUMNS = ("notification_id, desk, recipient_id, setting_urn, subject, recorded_at, due_by, calendar_version, "
            "delivered_at, acknowledged_at, acknowledged_by, incident_at, police_due_by")


def _tracked(row: tuple[Any, ...]) -> Tracked:
    (nid, desk, recipient, urn, subject, recorded, due, version, delivered, acked, acked_by, incident,
     police_due) = row
    recorded_at, due_by = _dt(recorded), _dt(due)
    assert recorded_at is not None
    assert due_by is not None
    return Tracked(notification_id=nid, desk=desk, recipient_id=recipient, setting_urn=urn, subject=subject,
                   recorded_at=recorded_at, due_by=due_by, calendar_version=version, delivered_at=_dt(delivered),
                   acknowledged_at=_dt(acked), acknowledged_by=acked_by, incident_at=_dt(incident),
                   police_due_by=_dt(police_due))

"""
A simulated school year of Operation Encompass: does every notification reach a Key Adult before school starts?

Unit tests show the `EncompassMonitor` fires each step at the right minute for a
handful of hand-made notifications.  This simulation runs a whole academic year
of them (2025-26, 1 September 2025 to 31 July 2026) through the same monitor, so
a safeguarding lead can see the figures the on-time report would give for a
borough-sized partnership: how many notifications, how many were acknowledged
before ``due_by``, how long Key Adults take, how often deputies and the local
authority's education safeguarding officer are pulled in, what stays unresolved,
and what two broker outages did.

Nothing here is real: the settings, children and tokens are synthetic.

How it runs
-----------
Incidents are drawn first (below), each child becomes one notification to one
setting (the router makes one per child and recipient), and then a discrete-event
loop plays the year in time order on a simulated clock:

- the sharing decision is recorded when the incident is; delivery follows a
  second later, or when the broker comes back if it is down (``delivered_at`` =
  outage end, as the brief models it);
- on delivery the Key Adult's reading time is drawn from the behaviour model
  below, and becomes an ``audit.acknowledged`` fact at that time;
- the driver wakes only at instants when an escalation step could fall due
  (``due_by`` minus the resurface and deputies lead times, and ``due_by``; but
  never before the decision, or for resurfacing the delivery, that the step
  rests on), and only if a notification with a step at that instant is still
  unacknowledged: then it hands the monitor every fact recorded so far and
  calls ``due_steps(now)``, marking each step fired at ``now``.  A wake-up is a
  scheduler, not a second opinion: the monitor alone decides which steps are
  due, and ``steps_fired_late`` in the result counts any step found later than
  the monitor could first have known it was due (0 when the wake-ups cover the
  monitor's schedule).  Polling every 5 minutes would call ``due_steps`` about
  100,000 times, each reading every unacknowledged row; waking on the schedule
  calls it under a thousand times;
- when the deputies are alerted, a deputy acknowledges with some probability, so
  the officer's step is then never due.

Volumes (sources)
-----------------
- **10,000 incidents a year for about 300,000 people**, pro rata to the 334
  days simulated (9,151).  Local strategies in /work/shared/seeds/ give the
  range: South Yorkshire Police recorded 9,724 domestic-abuse incidents in
  Doncaster in 2020-21 (seed 000); Barnsley averaged 567 a month in 2019-21,
  about 6,800 a year (seed 002); Cleveland Police recorded 4,396 in Stockton-on-
  Tees in 2015-16 (seed 004).  (The boroughs have roughly 310k, 245k and 200k
  people; those populations are our approximation, not from the seeds.)
- **A third of incidents involve children** (the brief).  Stockton's early
  Encompass figures are lower: 193 incidents with children present in one
  quarter of 2016, about 18% of its incidents (seed 004), so this is a busy
  borough.
- **1-3 children each, 1.42 on average** (weights 66/26/8), matching Stockton's
  274 children for 193 incidents (seed 004).
- **60 settings.**  The six sample-calendar schools (URNs 900101-900106) keep
  their own calendars; the other 54 get synthetic URNs 9002xx, which the
  calendar file does not list, so `CalendarBook.for_setting` gives them the
  partnership's default calendar (``resolution == "partnership-default"``).
  A real borough of this size has more settings (Stockton had 139 for about
  200k people), so per-setting counts here are roughly double a real school's.
  Children are spread by the settings' rolls (primary 120-450, secondary
  700-1,600, special/nursery 50-160 pupils); a sibling shares the first child's
  setting half the time.

When incidents happen (sources; kept simple)
--------------------------------------------
The time drawn is when the police record the incident on the bus (a little after
the call), in local time:

- **Hour of day** (`HOUR_WEIGHTS`): low 04:00-08:00, rising through the
  afternoon, highest 19:00-23:00.  34% fall between 21:00 and 03:00; a
  Metropolitan Police sample of 2006 had 45.6% of incidents *committed* then, and
  US call data peak 16:00-24:00 (both collected by the pages corpus).
- **Day of week** (`DAY_WEIGHTS`): Saturdays and Sundays about a quarter above
  weekdays, giving a 34.5% weekend share; Idaho crime data had 36% against the
  28.6% an even spread gives (Vazquez, Stohr & Purkiss 2005).  Hours before
  06:00 count towards the previous day, so Saturday 01:00 is Friday night.
- **Season** (`MONTH_WEIGHTS`): a mild summer high and a February low.
- **Special days** (`SPECIAL_DAYS`): Christmas to New Year raised, New Year's
  Day highest (New South Wales reports domestic assaults +118% on New Year's
  Day and +78% on Christmas and Boxing Day; we use gentler factors for England);
  the 2026 World Cup's England group matches at x1.3 and the next day x1.11
  (Kirby, Francis & O'Flaherty 2014, Lancashire: +26% when England won or drew,
  +38% when they lost, +11% the day after).  The match dates (17, 23 and 27 June
  2026) are the group fixtures as drawn in December 2025; check them before
  relying on them.  Knock-out rounds are not modelled.

How Key Adults read (assumptions, not measurements)
----------------------------------------------------
- Arrival on a school day is between 07:30 and 08:40 local (triangular, most
  around 08:00); an alert waiting overnight, at a weekend or over a holiday is
  read on arrival on the next *school day of that setting's calendar* (INSET
  days do not count, though staff are in).
- During the school day (arrival to 16:30) an alert is read after a log-normal
  delay, median 20 minutes (90% within about 70 minutes, 99% within 3.4 hours);
  if that would run past 17:30 it is read on arrival the next school day.
- On a school-day evening before 21:00, 10% of Key Adults glance at the
  monitored inbox within 10-90 minutes.
- A Key Adult is absent (ill, training, a trip) on 5% of school days; the alert
  then waits for the next day they are in, which the deputies' step is for.
- 1% of alerts are simply missed by the Key Adult.
- Three settings (`Scenario.never_acknowledging`) never acknowledge anything,
  deputies included: a dead mailbox, or no Key Adult in post.
- When the deputies are alerted (45 minutes before ``due_by``), one
  acknowledges with probability 0.6, after an exponential delay with a 15-minute
  mean.  Resurfacing and the officer's call change nothing in this model: the
  officer follows up by phone, outside the bus, and no acknowledgement is
  recorded for it.

Outages
-------
Two outages of 6 hours: Wednesday 21 January 2026 21:00 to Thursday 03:00, and
Sunday 15 March 2026 10:00-16:00 (local; both in GMT).  Decisions are recorded
when the incident is (the monitor sees them at once, as if it read the audit log
beside the sequencer); delivery waits for the outage's end.

Usage::

    python bench/simulated_year.py [--seed N] [--out PATH]

The monitor's database lives in a temporary directory, on ``/dev/shm`` when there
is one: the monitor commits each ``mark_fired`` on its own, so on a disk every
step costs an fsync, which made up most of a 24 s run on this project's VM
(user time 4.6 s).  Durability is not what this measures.  The run prints the on-time
report for the partnership and its five worst settings, the headline figures and,
last, a JSON object with every number, also written to
``bench/results/simulated_year.json`` (or `--out`).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from enum import IntEnum
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.calendars import CalendarBook, SettingCalendar
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.monitor import ENCOMPASS_AGREEMENT, EncompassMonitor, Step
from safebus.consumers.encompass.on_time import REPORT_COLUMNS, OnTimeLine, on_time_report, report_rows
from safebus.schemas.audit import EscalationStep

RESULTS_PATH: Final = Path(__file__).resolve().parent / "results" / "simulated_year.json"
DEFAULT_SEED: Final = 20250901

# --------------------------------------------------------------------------- volumes

INCIDENTS_PER_YEAR: Final = 10_000
"""Police-attended domestic-abuse incidents a year in a borough of about 300,000 people (see the module docstring)."""
SHARE_WITH_CHILDREN: Final = 1 / 3
"""Share of incidents with children in the household, each of whom the setting's Key Adult must be told about."""
CHILDREN_WEIGHTS: Final = ((1, 66), (2, 26), (3, 8))
"""(children, weight): a mean of 1.42 children per incident with children, as Stockton's 274 for 193."""
SIBLING_SAME_SETTING: Final = 0.5
"""Chance that a second or third child attends the first child's setting (siblings in one primary)."""
ROLLS: Final = {"primary": (120, 450), "secondary": (700, 1600), "special": (50, 160), "sixth-form": (600, 1200)}
"""Pupils on roll by phase (inclusive range): children are spread across settings in proportion to the roll."""
SYNTHETIC_PHASES: Final = (("primary", 75), ("secondary", 17), ("special", 8))
"""Phase mix of the synthetic 9002xx settings (weights)."""
SAMPLE_PHASES: Final = {"900101": "primary", "900102": "secondary", "900103": "primary", "900104": "primary",
                        "900105": "secondary", "900106": "sixth-form"}
"""The six sample-calendar schools (producers/synthetic.py `SCHOOLS`): infant and junior schools count as primary."""
FIRST_SYNTHETIC_URN: Final = 900201

# --------------------------------------------------------------------------- when incidents happen

HOUR_WEIGHTS: Final = (1.3, 1.1, 0.9, 0.7, 0.5, 0.35, 0.3, 0.4, 0.55, 0.65, 0.75, 0.8,
                       0.85, 0.9, 0.95, 1.0, 1.1, 1.25, 1.4, 1.55, 1.65, 1.7, 1.65, 1.5)
"""Relative rate by local hour of recording, 00:00 first: evenings high, early mornings low."""
DAY_WEIGHTS: Final = (1.0, 0.92, 0.92, 0.95, 1.05, 1.25, 1.3)
"""Relative rate by day of the week, Monday first (the night before 06:00 belongs to the previous day)."""
NIGHT_BELONGS_TO_PREVIOUS_DAY: Final = timedelta(hours=6)
MONTH_WEIGHTS: Final = {1: 1.0, 2: 0.92, 3: 0.97, 4: 1.0, 5: 1.05, 6: 1.08, 7: 1.1, 8: 1.1, 9: 1.0, 10: 0.97,
                        11: 0.95, 12: 1.0}
"""Relative rate by month: a mild summer high, a February low."""
SPECIAL_DAYS: Final = {
    date(2025, 12, 24): 1.2, date(2025, 12, 25): 1.4, date(2025, 12, 26): 1.4, date(2025, 12, 27): 1.2,
    date(2025, 12, 28): 1.2, date(2025, 12, 29): 1.1, date(2025, 12, 30): 1.1, date(2025, 12, 31): 1.3,
    date(2026, 1, 1): 1.8, date(2026, 1, 2): 1.2,
    # FIFA World Cup 2026, England's group matches (as drawn in Dec 2025) and the day after each.
    date(2026, 6, 17): 1.3, date(2026, 6, 18): 1.11, date(2026, 6, 23): 1.3, date(2026, 6, 24): 1.11,
    date(2026, 6, 27): 1.3, date(2026, 6, 28): 1.11,
}
"""Factors on top of the month's for Christmas to New Year and the World Cup (sources in the module docstring)."""

# --------------------------------------------------------------------------- how staff read

DELIVERY_LATENCY_S: Final = (0.05, 1.0)
"""Decision to inbox when the broker is up: the thin-path benchmark's paced p50 is 43 ms, plus inbox batching."""
ARRIVAL: Final = (clock(7, 30), clock(8, 0), clock(8, 40))
"""(earliest, most likely, latest) local time a Key Adult reads the inbox on arrival."""
SCHOOL_DAY_END: Final = clock(16, 30)
"""After this the Key Adult has left; alerts wait for the evening glance or the next arrival."""
LATEST_DAYTIME_READ: Final = clock(17, 30)
"""A daytime read that would land after this is taken on the next arrival instead."""
DAYTIME_READ_MEDIAN_MIN: Final = 20.0
DAYTIME_READ_SIGMA: Final = 1.0
"""Log-normal spread of daytime reading delays: 90% within about 70 minutes, 99% within 3.4 hours."""
EVENING_CHECK: Final = 0.10
"""Chance a Key Adult reads a school-day evening alert (before `EVENING_CHECK_UNTIL`) that evening."""
EVENING_CHECK_UNTIL: Final = clock(21, 0)
EVENING_DELAY_MIN: Final = (10.0, 90.0)
KEY_ADULT_ABSENT: Final = 0.05
"""Chance the Key Adult is away on a given school day."""
KEY_ADULT_MISSES: Final = 0.01
"""Chance a Key Adult never reads an alert (it scrolls out of sight)."""
DEPUTY_ACKNOWLEDGES: Final = 0.6
"""Chance that, once alerted, one of the deputies acknowledges."""
DEPUTY_DELAY_MEAN_MIN: Final = 15.0
"""Mean of the deputies' (exponential) delay after their alert."""
END_MARGIN: Final = timedelta(minutes=1)
"""The clock stops this long after the last deadline, so every notification's ``due_by`` has passed."""


@dataclass(frozen=True, kw_only=True)
class Outage:
    """A period when the broker is down: decisions are still recorded, delivery waits for `end`."""

    label: str
    start: datetime
    end: datetime

    def covers(self, at: datetime) -> bool:
        """Whether `at` falls inside the outage (start inclusive, end exclusive)."""
        return self.start <= at < self.end


def _local(day: date, at: clock, calendar: SettingCalendar) -> datetime:
    """`day` at local wall-clock time `at` on `calendar`'s zone, as aware UTC."""
    return datetime.combine(day, at, tzinfo=calendar.tz).astimezone(UTC)


_LONDON: Final = ZoneInfo("Europe/London")
"""The sample partnership's time zone: incidents are drawn, and outages written, in its local time."""


def _london(year: int, month: int, day: int, hour: int) -> datetime:
    return datetime(year, month, day, hour, tzinfo=_LONDON).astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """What to simulate: the window (local dates, inclusive), volumes, settings, outages and the seed."""

    first_day: date
    last_day: date
    incidents: int
    settings: int = 60
    never_acknowledging: int = 3
    share_with_children: float = SHARE_WITH_CHILDREN
    outages: tuple[Outage, ...] = ()
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        """Reject scenarios the URN scheme or the calendars cannot hold."""
        if not 6 <= self.settings <= 6 + 99:
            raise ValueError(f"settings must be 6..105 (six sample schools + synthetic 9002xx), got {self.settings}")
        if not 0 <= self.never_acknowledging <= self.settings:
            raise ValueError("never_acknowledging must be between 0 and settings")
        if self.last_day < self.first_day:
            raise ValueError("last_day is before first_day")

    @classmethod
    def academic_year_2025_26(cls, *, seed: int = DEFAULT_SEED) -> Scenario:
        """The full run: 1 Sep 2025 to 31 Jul 2026, 10,000 incidents a year pro rata, two outages."""
        first, last = date(2025, 9, 1), date(2026, 7, 31)
        days = (last - first).days + 1
        return cls(first_day=first, last_day=last, incidents=round(INCIDENTS_PER_YEAR * days / 365), seed=seed,
                   outages=(Outage(label="weekday night", start=_london(2026, 1, 21, 21), end=_london(2026, 1, 22, 3)),
                            Outage(label="sunday", start=_london(2026, 3, 15, 10), end=_london(2026, 3, 15, 16))))


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One setting: its URN, directory agency id, phase and roll, and whether anyone there ever acknowledges."""

    urn: str
    agency_id: str
    phase: str
    roll: int
    never_acknowledges: bool
    calendar: SettingCalendar


@dataclass(kw_only=True)
class Notification:
    """The simulator's own record of one notification (the monitor keeps its own, from the facts)."""

    notification_id: str
    subject: str
    setting: Setting
    recorded_at: datetime
    delivered_at: datetime
    outage: str | None
    due_by: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


_NOT_YET: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(kw_only=True)
class Simulation:
    """A finished run: the monitor (still open; call `close`) and what the driver saw and did."""

    scenario: Scenario
    calendars: CalendarBook
    monitor: EncompassMonitor
    settings: list[Setting]
    incidents: int
    incidents_with_children: int
    notifications: list[Notification]
    escalations: Counter[EscalationStep] = field(default_factory=Counter)
    wakeups: int = 0
    due_steps_calls: int = 0
    facts_observed: int = 0
    steps_fired_late: int = 0
    ended_at: datetime = _NOT_YET

    def close(self) -> None:
        """Close the monitor's database."""
        self.monitor.close()


class _Kind(IntEnum):
    """Event kinds, in the order they are handled at the same instant (facts before the monitor looks)."""

    DECISION = 0
    DELIVERY = 1
    ACKNOWLEDGEMENT = 2
    WAKE = 3


_Event = tuple[datetime, _Kind, int, str, str]
"""(at, kind, sequence, notification id, staff id): a heap entry; the sequence keeps equal instants stable."""
_Push = Callable[[datetime, _Kind, str, str], None]
"""Schedules an event: (at, kind, notification id, staff id)."""


# --------------------------------------------------------------------------- drawing the year


def make_settings(rng: random.Random, scenario: Scenario, calendars: CalendarBook) -> list[Setting]:
    """The six sample schools, then synthetic 9002xx settings; `never_acknowledging` of them chosen at random."""
    phases = list(SAMPLE_PHASES.items())
    names, weights = [n for n, _ in SYNTHETIC_PHASES], [w for _, w in SYNTHETIC_PHASES]
    for index in range(scenario.settings - len(phases)):
        phases.append((str(FIRST_SYNTHETIC_URN + index), rng.choices(names, weights=weights)[0]))
    silent = set(rng.sample([urn for urn, _ in phases], scenario.never_acknowledging))
    return [Setting(urn=urn, agency_id=f"school-{urn}", phase=phase, roll=rng.randint(*ROLLS[phase]),
                    never_acknowledges=urn in silent, calendar=calendars.for_setting(urn))
            for urn, phase in phases]


def incident_times(rng: random.Random, scenario: Scenario) -> list[datetime]:
    """`scenario.incidents` recording instants (aware UTC, sorted), drawn hour by hour from the weights above."""
    start = datetime.combine(scenario.first_day, clock(0), tzinfo=_LONDON).astimezone(UTC)
    end = datetime.combine(scenario.last_day + timedelta(days=1), clock(0), tzinfo=_LONDON).astimezone(UTC)
    hours: list[datetime] = []
    weights: list[float] = []
    at = start
    while at < end:
        local = at.astimezone(_LONDON)
        night_of = (local - NIGHT_BELONGS_TO_PREVIOUS_DAY).date()
        hours.append(at)
        weights.append(HOUR_WEIGHTS[local.hour] * DAY_WEIGHTS[night_of.weekday()] * MONTH_WEIGHTS[local.month]
                       * SPECIAL_DAYS.get(local.date(), 1.0))
        at += timedelta(hours=1)
    chosen = rng.choices(hours, cum_weights=list(itertools.accumulate(weights)), k=scenario.incidents)
    return sorted(hour + timedelta(seconds=rng.uniform(0, 3600)) for hour in chosen)


def _children(rng: random.Random, scenario: Scenario, settings: list[Setting]) -> list[Setting]:
    """The settings of one incident's children (empty if there are none)."""
    if rng.random() >= scenario.share_with_children:
        return []
    counts, weights = [c for c, _ in CHILDREN_WEIGHTS], [w for _, w in CHILDREN_WEIGHTS]
    rolls = [s.roll for s in settings]
    first = rng.choices(settings, weights=rolls)[0]
    chosen = [first]
    for _ in range(rng.choices(counts, weights=weights)[0] - 1):
        chosen.append(first if rng.random() < SIBLING_SAME_SETTING else rng.choices(settings, weights=rolls)[0])
    return chosen


def _arrival(rng: random.Random, day: date, calendar: SettingCalendar) -> datetime:
    earliest, likely, latest = (t.hour * 60 + t.minute for t in ARRIVAL)
    minutes = rng.triangular(earliest, latest, likely)
    return _local(day, clock(0), calendar) + timedelta(minutes=minutes)


def key_adult_reads(rng: random.Random, calendar: SettingCalendar, delivered_at: datetime) -> datetime:
    """
    When the Key Adult reads an alert delivered at `delivered_at` (the model in the module docstring).

    Always after delivery.  Raises CalendarHorizonError if the setting's calendar
    knows no school day after it.
    """
    local = delivered_at.astimezone(calendar.tz)
    today = local.date()
    if calendar.is_school_day(today):
        arrival = _arrival(rng, today, calendar)
        if rng.random() >= KEY_ADULT_ABSENT:
            if delivered_at < arrival:
                return arrival
            if local.time() < SCHOOL_DAY_END:
                delay = rng.lognormvariate(math.log(DAYTIME_READ_MEDIAN_MIN), DAYTIME_READ_SIGMA)
                read = delivered_at + timedelta(minutes=delay)
                if read <= _local(today, LATEST_DAYTIME_READ, calendar):
                    return read
            elif local.time() < EVENING_CHECK_UNTIL and rng.random() < EVENING_CHECK:
                return delivered_at + timedelta(minutes=rng.uniform(*EVENING_DELAY_MIN))
    day = today
    while True:  # the next school day the Key Adult is in
        day = calendar.add_school_days(day, 1)
        if rng.random() >= KEY_ADULT_ABSENT:
            return _arrival(rng, day, calendar)


# --------------------------------------------------------------------------- the clock


def simulate(scenario: Scenario, *, workdir: Path, calendars: CalendarBook | None = None) -> Simulation:
    """
    Play `scenario` through an `EncompassMonitor` whose SQLite database is in `workdir`.

    Returns the finished `Simulation` with the monitor still open, so callers can
    read its records and report; the caller closes it.
    """
    rng = random.Random(scenario.seed)
    book = calendars or sample_calendars()
    policy = load_policy()
    settings = make_settings(rng, scenario, book)
    monitor = EncompassMonitor(workdir / "encompass-monitor.sqlite", calendars=book, policy=policy,
                               urn_of={s.agency_id: s.urn for s in settings})
    sim = Simulation(scenario=scenario, calendars=book, monitor=monitor, settings=settings, incidents=0,
                     incidents_with_children=0, notifications=[])
    heap: list[_Event] = []
    sequence = itertools.count()

    def push(at: datetime, kind: _Kind, nid: str, staff: str) -> None:
        heapq.heappush(heap, (at, kind, next(sequence), nid, staff))

    # (1): the incidents and their children, each child one notification.
    by_id: dict[str, Notification] = {}
    for recorded_at in incident_times(rng, scenario):
        sim.incidents += 1
        children = _children(rng, scenario, settings)
        sim.incidents_with_children += bool(children)
        for setting in children:
            outage = next((o for o in scenario.outages if o.covers(recorded_at)), None)
            delivered_at = outage.end if outage else recorded_at + timedelta(seconds=rng.uniform(*DELIVERY_LATENCY_S))
            note = Notification(
                notification_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                subject=f"subj_{rng.getrandbits(128):032x}", setting=setting, recorded_at=recorded_at,
                delivered_at=delivered_at, outage=outage.label if outage else None,
                due_by=setting.calendar.due_by(recorded_at))
            sim.notifications.append(note)
            by_id[note.notification_id] = note
            push(recorded_at, _Kind.DECISION, note.notification_id, "")

    # (2): wake-ups at every instant a step of some notification could fall due.  A step cannot be found
    # before the facts it rests on: a decision recorded after ``due_by - deputies_lead`` has its deputies
    # step due at once, and the resurface step needs the delivery.
    waiting_on: dict[datetime, list[Notification]] = {}
    for note in sim.notifications:
        for at in (max(note.due_by - policy.resurface_lead, note.delivered_at),
                   max(note.due_by - policy.deputies_lead, note.recorded_at), note.due_by):
            waiting_on.setdefault(at, []).append(note)
    for at in waiting_on:
        push(at, _Kind.WAKE, "", "")

    # (3): play the events in time order; facts reach the monitor just before it is asked.
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if pending:
            sim.facts_observed += len(pending)
            monitor.observe(pending)
            pending.clear()

    last = scenario_start = datetime.combine(scenario.first_day, clock(0), tzinfo=_LONDON).astimezone(UTC)
    while heap:
        at, kind, _, nid, staff = heapq.heappop(heap)
        last = at
        if kind is _Kind.DECISION:
            note = by_id[nid]
            pending.append(_decision_fact(note))
            push(note.delivered_at, _Kind.DELIVERY, nid, "")
        elif kind is _Kind.DELIVERY:
            note = by_id[nid]
            pending.append({"event_type": "audit.delivered", "output_id": nid, "delivered_at": at.isoformat()})
            if not note.setting.never_acknowledges and rng.random() >= KEY_ADULT_MISSES:
                push(key_adult_reads(rng, note.setting.calendar, at), _Kind.ACKNOWLEDGEMENT, nid,
                     f"KA-{note.setting.urn}")
        elif kind is _Kind.ACKNOWLEDGEMENT:
            note = by_id[nid]
            if note.acknowledged_at is None:  # a deputy or the Key Adult got there first otherwise
                note.acknowledged_at, note.acknowledged_by = at, staff
                pending.append({"event_type": "audit.acknowledged", "notification_id": nid,
                                "acknowledged_at": at.isoformat(), "staff_id": staff})
        else:
            if all(n.acknowledged_at is not None for n in waiting_on.pop(at)):
                continue
            sim.wakeups += 1
            flush()
            _take_steps(sim, at, rng, push, by_id)
    # (4): a minute past the last deadline; anything the wake-ups missed would show here, fired late.
    sim.ended_at = max(last, max((n.due_by for n in sim.notifications), default=scenario_start)) + END_MARGIN
    flush()
    _take_steps(sim, sim.ended_at, rng, push, by_id)
    return sim


def _decision_fact(note: Notification) -> dict[str, Any]:
    return {"event_type": "audit.sharing-decision", "agreement_id": ENCOMPASS_AGREEMENT, "outcome": "shared",
            "recipient": note.setting.agency_id, "recipient_kind": "school", "output_id": note.notification_id,
            "recorded_at": note.recorded_at.isoformat(), "subjects": [note.subject]}


def _take_steps(sim: Simulation, now: datetime, rng: random.Random, push: _Push,
                by_id: dict[str, Notification]) -> None:
    """Ask the monitor what is due at `now`, fire it, and let alerted deputies respond."""
    sim.due_steps_calls += 1
    steps: list[Step] = sim.monitor.due_steps(now)
    for step in steps:
        sim.monitor.mark_fired(step, at=now)
        sim.escalations[step.step] += 1
        knowable = max(step.due_at, step.tracked.recorded_at)
        if step.step is EscalationStep.RESURFACED and step.tracked.delivered_at is not None:
            knowable = max(knowable, step.tracked.delivered_at)
        sim.steps_fired_late += knowable < now
        if step.step is not EscalationStep.DEPUTIES:
            continue
        note = by_id[step.tracked.notification_id]
        if not note.setting.never_acknowledges and rng.random() < DEPUTY_ACKNOWLEDGES:
            delay = timedelta(minutes=rng.expovariate(1 / DEPUTY_DELAY_MEAN_MIN))
            push(now + delay, _Kind.ACKNOWLEDGEMENT, note.notification_id, f"DEP-{note.setting.urn}")


# --------------------------------------------------------------------------- figures


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _line(line: OnTimeLine) -> dict[str, Any]:
    figures = asdict(line)
    figures["setting_urn"] = line.setting_urn or "partnership"
    figures["on_time_rate"] = _round(line.on_time_rate, 4)
    figures["median_minutes_to_acknowledge"] = _round(line.median_minutes_to_acknowledge, 1)
    return figures


def _percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def _in_school_hours(calendar: SettingCalendar, at: datetime) -> bool:
    """Whether `at` falls on one of the setting's school days between 08:00 and `SCHOOL_DAY_END`, local."""
    local = at.astimezone(calendar.tz)
    return calendar.is_school_day(local.date()) and clock(8, 0) <= local.time() < SCHOOL_DAY_END


def summarise(sim: Simulation, *, runtime_s: float, database_dir: str = "") -> dict[str, Any]:
    """Every figure of the run, from the monitor's own records and report (the driver's records only for outages)."""
    lines = on_time_report(sim.monitor, now=sim.ended_at)
    partnership, per_setting = lines[-1], lines[:-1]
    tracked = {t.notification_id: t for t in sim.monitor.all()}
    minutes = [(t.acknowledged_at - (t.delivered_at or t.recorded_at)) / timedelta(minutes=1)
               for t in tracked.values() if t.acknowledged_at is not None]
    late = [(t.acknowledged_at - t.due_by) / timedelta(minutes=1)
            for t in tracked.values() if t.acknowledged_at is not None and t.acknowledged_at > t.due_by]
    by_deputy = [t for t in tracked.values() if (t.acknowledged_by or "").startswith("DEP-")]
    settings = {s.urn: s for s in sim.settings}
    never = sorted(s.urn for s in sim.settings if s.never_acknowledges)
    daytime = [(t.acknowledged_at - t.delivered_at) / timedelta(minutes=1) for t in tracked.values()
               if t.acknowledged_at is not None and t.delivered_at is not None
               and _in_school_hours(settings[str(t.setting_urn)].calendar, t.delivered_at)]
    answering = [line for line in per_setting if line.setting_urn not in never]
    deputies_alerted = [t for t in tracked.values() if EscalationStep.DEPUTIES in sim.monitor.fired(t.notification_id)]
    answering_sent = sum(line.sent for line in answering)
    worst = sorted(per_setting, key=lambda line: (line.on_time_rate if line.on_time_rate is not None else 2.0,
                                                  -line.unresolved, str(line.setting_urn)))[:5]
    outages = []
    for outage in sim.scenario.outages:
        hit = [tracked[n.notification_id] for n in sim.notifications if n.outage == outage.label]
        outages.append({
            "label": outage.label, "start": outage.start.isoformat(), "end": outage.end.isoformat(),
            "hours": round((outage.end - outage.start) / timedelta(hours=1), 2), "notifications": len(hit),
            "delivered_at_outage_end": sum(t.delivered_at == outage.end for t in hit),
            "delivered_before_due": sum(t.delivered_at is not None and t.delivered_at <= t.due_by for t in hit),
            "acknowledged_before_due": sum(t.acknowledged_on_time for t in hit),
        })
    synthetic = sorted(urn for urn in settings if not urn.startswith("9001"))

    def setting_figures(line: OnTimeLine) -> dict[str, Any]:
        setting = settings[str(line.setting_urn)]
        return {**_line(line), "phase": setting.phase, "roll": setting.roll,
                "never_acknowledges": setting.never_acknowledges, "calendar": setting.calendar.resolution}

    return {
        "bench": "simulated_year",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": sim.scenario.seed,
        "python": platform.python_version(),
        "runtime_seconds": round(runtime_s, 2),
        "database_dir": database_dir,
        "first_day": sim.scenario.first_day.isoformat(),
        "last_day": sim.scenario.last_day.isoformat(),
        "clock_ended_at": sim.ended_at.isoformat(),
        "incidents": sim.incidents,
        "incidents_with_children": sim.incidents_with_children,
        "notifications": partnership.sent,
        "settings_count": len(sim.settings),
        "synthetic_settings": (f"{len(synthetic)} synthetic settings, URNs {synthetic[0]}-{synthetic[-1]}, on the "
                               f"partnership default calendar; 900101-900106 on their own sample calendars")
        if synthetic else "none",
        "never_acknowledging_settings": never,
        "partnership": _line(partnership),
        "on_time_rate": _round(partnership.on_time_rate, 4),
        "acknowledged_before_due": partnership.acknowledged_before_due,
        "median_minutes_to_acknowledge": _round(partnership.median_minutes_to_acknowledge, 1),
        "p90_minutes_to_acknowledge": _round(_percentile(minutes, 90), 1),
        "median_minutes_to_acknowledge_school_hours": _round(statistics.median(daytime), 1) if daytime else None,
        "p90_minutes_to_acknowledge_school_hours": _round(_percentile(daytime, 90), 1),
        "acknowledged_school_hours_deliveries": len(daytime),
        "on_time_rate_excluding_never_acknowledging": _round(
            sum(line.acknowledged_before_due for line in answering) / answering_sent, 4) if answering_sent else None,
        "acknowledged_late": len(late),
        "median_minutes_late": _round(statistics.median(late), 1) if late else None,
        "acknowledged_by_deputies": len(by_deputy),
        "acknowledged_by_deputies_before_due": sum(t.acknowledged_on_time for t in by_deputy),
        "deputies_alerted_key_adult_still_in_time": sum(
            t.acknowledged_on_time and (t.acknowledged_by or "").startswith("KA-") for t in deputies_alerted),
        "deputies_alerted_within_lead_of_recording": sum(
            t.recorded_at > t.due_by - sim.monitor.policy.deputies_lead for t in deputies_alerted),
        "escalations_by_step": {step.value: sim.escalations.get(step, 0) for step in
                                (EscalationStep.RESURFACED, EscalationStep.DEPUTIES,
                                 EscalationStep.EDUCATION_SAFEGUARDING_OFFICER)},
        "unresolved": partnership.unresolved,
        "unresolved_at_never_acknowledging_settings": sum(
            line.unresolved for line in per_setting if line.setting_urn in never),
        "outages": outages,
        "outage_affected_notifications": sum(o["notifications"] for o in outages),
        "worst_settings": [setting_figures(line) for line in worst],
        "settings": [setting_figures(line) for line in per_setting],
        "driver": {"wakeups": sim.wakeups, "due_steps_calls": sim.due_steps_calls,
                   "facts_observed": sim.facts_observed, "steps_fired_late": sim.steps_fired_late},
        "assumptions": {
            "incidents_per_year": INCIDENTS_PER_YEAR, "share_with_children": round(sim.scenario.share_with_children, 4),
            "children_weights": dict(CHILDREN_WEIGHTS), "sibling_same_setting": SIBLING_SAME_SETTING,
            "arrival_local": [t.strftime("%H:%M") for t in ARRIVAL],
            "daytime_read_median_minutes": DAYTIME_READ_MEDIAN_MIN, "daytime_read_sigma": DAYTIME_READ_SIGMA,
            "evening_check": EVENING_CHECK, "key_adult_absent": KEY_ADULT_ABSENT,
            "key_adult_misses": KEY_ADULT_MISSES, "deputy_acknowledges": DEPUTY_ACKNOWLEDGES,
            "deputy_delay_mean_minutes": DEPUTY_DELAY_MEAN_MIN,
            "policy_version": sim.monitor.policy.version,
            "deputies_lead_minutes": sim.monitor.policy.deputies_lead_minutes,
            "resurface_lead_minutes": sim.monitor.policy.resurface_lead_minutes,
            "calendar_version": sim.calendars.version,
        },
    }


def _table(rows: list[dict[str, str]]) -> list[str]:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in REPORT_COLUMNS}
    out = ["  ".join(c.ljust(widths[c]) for c in REPORT_COLUMNS)]
    out += ["  ".join(r[c].ljust(widths[c]) for c in REPORT_COLUMNS) for r in rows]
    return out


def report(sim: Simulation, summary: dict[str, Any], out: Path) -> None:
    """Print the on-time report (partnership, five worst settings) and the headline figures; write the JSON."""
    lines = on_time_report(sim.monitor, now=sim.ended_at)
    by_urn = {line.setting_urn: line for line in lines}
    worst = [by_urn[w["setting_urn"]] for w in summary["worst_settings"]]
    never = set(summary["never_acknowledging_settings"])
    print(f"Simulated school year {summary['first_day']} to {summary['last_day']} (seed {summary['seed']}): "
          f"{summary['incidents']} incidents, {summary['incidents_with_children']} with children, "
          f"{summary['notifications']} notifications to {summary['settings_count']} settings")
    print(f"Settings: {summary['synthetic_settings']}.")
    print(f"Never acknowledging: {', '.join(sorted(never)) or 'none'}")
    print()
    print("On-time report: the partnership, then the five worst settings (* = never acknowledges)")
    for row, shown in zip(_table(report_rows([lines[-1], *worst])), [None, lines[-1], *worst], strict=True):
        mark = " *" if shown is not None and shown.setting_urn in never else ""
        print("  " + row + mark)
    print()
    escalations = summary["escalations_by_step"]
    print(f"acknowledged before due_by : {summary['acknowledged_before_due']} of {summary['notifications']} "
          f"({100 * (summary['on_time_rate'] or 0):.1f}%)")
    print(f"  excluding the never-acknowledging settings: "
          f"{100 * (summary['on_time_rate_excluding_never_acknowledging'] or 0):.1f}%")
    print(f"time to acknowledge        : median {summary['median_minutes_to_acknowledge']} min, "
          f"p90 {summary['p90_minutes_to_acknowledge']} min (from delivery; most alerts arrive overnight)")
    print(f"  delivered in school hours: median {summary['median_minutes_to_acknowledge_school_hours']} min, "
          f"p90 {summary['p90_minutes_to_acknowledge_school_hours']} min "
          f"({summary['acknowledged_school_hours_deliveries']} alerts, 08:00-16:30 on school days)")
    print(f"acknowledged late          : {summary['acknowledged_late']} (median {summary['median_minutes_late']} min "
          f"after due_by)")
    print(f"deputies acknowledged      : {summary['acknowledged_by_deputies']} "
          f"({summary['acknowledged_by_deputies_before_due']} before due_by); of the alerts to deputies, "
          f"{summary['deputies_alerted_key_adult_still_in_time']} were then read in time by the Key Adult, "
          f"{summary['deputies_alerted_within_lead_of_recording']} went out the moment the decision was recorded")
    print(f"escalations by step        : resurfaced {escalations['resurfaced']}, deputies {escalations['deputies']}, "
          f"education safeguarding officer {escalations['education-safeguarding-officer']}")
    print(f"unresolved at the end      : {summary['unresolved']} "
          f"({summary['unresolved_at_never_acknowledging_settings']} at never-acknowledging settings)")
    for outage in summary["outages"]:
        print(f"outage '{outage['label']}' ({outage['hours']} h from {outage['start']}): "
              f"{outage['notifications']} notifications delivered at its end, "
              f"{outage['acknowledged_before_due']} acknowledged before due_by")
    driver = summary["driver"]
    print(f"driver                     : {driver['due_steps_calls']} due_steps calls, {driver['facts_observed']} "
          f"facts, {driver['steps_fired_late']} steps found late; {summary['runtime_seconds']} s")
    text = json.dumps(summary, sort_keys=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text, flush=True)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Simulate the 2025-26 school year of Operation Encompass "
                                                 "notifications through the monitor.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON result")
    return parser.parse_args(argv)


def _memory_tmp() -> str | None:
    """``/dev/shm`` if it is a writable directory (no fsync cost per step), else the system's temp dir."""
    shm = Path("/dev/shm")  # noqa: S108 - only the parent: TemporaryDirectory makes a fresh 0700 directory in it
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the full year and report it."""
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="safebus-simyear-", dir=_memory_tmp()) as workdir:
        sim = simulate(Scenario.academic_year_2025_26(seed=args.seed), workdir=Path(workdir))
        try:
            summary = summarise(sim, runtime_s=time.perf_counter() - started,
                                database_dir=str(Path(workdir).parent))
            report(sim, summary, args.out)
        finally:
            sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

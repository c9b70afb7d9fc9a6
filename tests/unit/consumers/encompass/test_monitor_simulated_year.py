"""
A fortnight of the simulated school year, checked for what a safeguarding lead relies on.

`bench/simulated_year.py` plays a whole academic year of Operation Encompass
notifications through the real `EncompassMonitor`; this runs the same code on a
seeded fortnight in January 2026 (twelve settings, three of which never
acknowledge, and a weekday-evening and a Sunday broker outage) and checks the
properties the year's figures rest on.  Every check also asserts that it had
something to check, so a change of seed or model cannot make it pass vacuously.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[4]
if str(_ROOT) not in sys.path:  # plain `pytest` (importlib mode) does not put the repository root on sys.path
    sys.path.insert(0, str(_ROOT))

from bench.simulated_year import Outage, Scenario, Simulation, simulate, summarise  # noqa: E402
from safebus.consumers.encompass.on_time import on_time_report  # noqa: E402
from safebus.schemas.audit import EscalationStep  # noqa: E402

WEEKDAY_EVENING = Outage(label="weekday evening", start=datetime(2026, 1, 14, 18, tzinfo=UTC),
                         end=datetime(2026, 1, 15, 0, tzinfo=UTC))  # January: UK time is UTC
SUNDAY = Outage(label="sunday", start=datetime(2026, 1, 18, 10, tzinfo=UTC), end=datetime(2026, 1, 18, 16, tzinfo=UTC))
FORTNIGHT = Scenario(first_day=date(2026, 1, 12), last_day=date(2026, 1, 25), incidents=150, settings=12,
                     never_acknowledging=3, outages=(WEEKDAY_EVENING, SUNDAY), seed=7)


@pytest.fixture(scope="module")
def fortnight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    """The fortnight, simulated once for every test in this module."""
    sim = simulate(FORTNIGHT, workdir=tmp_path_factory.mktemp("simulated-fortnight"))
    yield sim
    sim.close()


def test_never_acknowledging_settings_end_with_the_officer_told_after_due_by(fortnight: Simulation) -> None:
    """At a setting where nobody reads alerts, every notification reaches the deputies, then the officer at due_by."""
    silent = [n for n in fortnight.notifications if n.setting.never_acknowledges]
    assert silent
    for note in silent:
        tracked = fortnight.monitor.tracked(note.notification_id)
        assert tracked is not None
        assert tracked.acknowledged_at is None
        fired = fortnight.monitor.fired(note.notification_id)
        assert fired[EscalationStep.EDUCATION_SAFEGUARDING_OFFICER] >= tracked.due_by
        assert fired[EscalationStep.DEPUTIES] < tracked.due_by


def test_every_notification_has_one_due_by_the_next_session_start_on_its_settings_calendar(
        fortnight: Simulation) -> None:
    """One tracked record per notification, due at a session start on a school day, the first after recording."""
    tracked = fortnight.monitor.all()
    assert sorted(t.notification_id for t in tracked) == sorted(n.notification_id for n in fortnight.notifications)
    urns = {n.notification_id: n.setting.urn for n in fortnight.notifications}
    for record in tracked:
        assert record.setting_urn == urns[record.notification_id]
        calendar = fortnight.calendars.for_setting(urns[record.notification_id])
        day = record.due_by.astimezone(calendar.tz).date()
        assert calendar.is_school_day(day)
        assert record.due_by == calendar.session_start_on(day)
        assert record.due_by > record.recorded_at
        earlier = [d for d in calendar.school_days if d < day]
        assert calendar.session_start_on(earlier[-1]) <= record.recorded_at  # no session start was skipped


def test_outage_delayed_notifications_are_delivered_when_the_broker_returns(fortnight: Simulation) -> None:
    """Decisions recorded during an outage are delivered at its end; all others within seconds."""
    outages = {o.label: o for o in FORTNIGHT.outages}
    delayed = [n for n in fortnight.notifications if n.outage is not None]
    assert {n.outage for n in delayed} == set(outages)
    for note in fortnight.notifications:
        tracked = fortnight.monitor.tracked(note.notification_id)
        assert tracked is not None
        if note.outage is None:
            assert tracked.delivered_at is not None
            assert tracked.delivered_at - tracked.recorded_at < timedelta(seconds=5)
        else:
            outage = outages[note.outage]
            assert outage.start <= tracked.recorded_at < outage.end
            assert tracked.delivered_at == outage.end


def test_acknowledged_before_due_never_exceeds_acknowledged_or_sent(fortnight: Simulation) -> None:
    """Per setting and for the partnership: acknowledged in time ⊆ acknowledged ⊆ sent."""
    lines = on_time_report(fortnight.monitor, now=fortnight.ended_at)
    assert lines[-1].sent == len(fortnight.notifications)
    assert sum(line.sent for line in lines[:-1]) == lines[-1].sent
    for line in lines:
        assert line.acknowledged_before_due <= line.acknowledged <= line.sent
        assert line.on_time_rate is not None
        assert 0.0 <= line.on_time_rate <= 1.0


def test_a_deputys_acknowledgement_before_due_by_spares_the_officer(fortnight: Simulation) -> None:
    """When a deputy acknowledges in time, the officer is never told."""
    by_deputy = [t for t in fortnight.monitor.all()
                 if t.acknowledged_on_time and (t.acknowledged_by or "").startswith("DEP-")]
    assert by_deputy
    for tracked in by_deputy:
        fired = fortnight.monitor.fired(tracked.notification_id)
        assert EscalationStep.DEPUTIES in fired
        assert EscalationStep.EDUCATION_SAFEGUARDING_OFFICER not in fired


def test_the_driver_asked_the_monitor_at_every_step_due(fortnight: Simulation) -> None:
    """No step was found later than the monitor could have known it was due, and none was left unfired."""
    assert fortnight.steps_fired_late == 0
    assert fortnight.monitor.due_steps(fortnight.ended_at) == []


def test_the_same_seed_gives_the_same_year(fortnight: Simulation, tmp_path: Path) -> None:
    """A seeded run is reproducible: every figure but the wall-clock ones is the same."""
    again = simulate(FORTNIGHT, workdir=tmp_path)
    try:
        first, second = (summarise(sim, runtime_s=0.0) for sim in (fortnight, again))
    finally:
        again.close()
    for figures in (first, second):
        del figures["at"]
    assert first == second

"""
Plausible payload times (issue 11.4, 12.3): the router refuses incidents from the future or the distant past.

The envelope's clock window says when the police system *sent* the event;
these checks are about when the *incident* happened.  An incident dated 400
days ahead or eleven years ago starts clocks that mean nothing, so it is
dead-lettered with the reason, unless the operator started an audited
backfill that covers it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta

import pytest

from safebus.app.wiring import Settings, build_handler, build_police_publisher
from safebus.processors.backfill import backfill_authorised
from safebus.processors.replay import PayloadWindow
from safebus.producers.synthetic import IncidentFactory
from safebus.records import DLQ_DETAIL, DLQ_REASON, Origin
from safebus.schemas.decision import SharingDecision
from safebus.schemas.police import DomesticAbuseIncident
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

NAMES = TopicNames(prefix="t")


def _route(partnership: Partnership, incident: DomesticAbuseIncident, *,
           backfill_from: date | None = None) -> tuple[dict[str, str] | None, list[SharingDecision]]:
    """The dead letter's headers (or None) and the decisions, for one incident through the real handler."""
    settings = Settings(state_dir=partnership.state_dir, bootstrap="unused:9092", names=NAMES)
    handler = build_handler(settings, clock=lambda: FIXED_NOW, backfill_from=backfill_from)
    record = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(incident)
    outputs = handler.handle(record.value, Origin(topic=record.topic, partition=0, offset=1, key=record.key))
    dead = [o for o in outputs if o.topic == NAMES.deadletter]
    decisions = [SharingDecision.model_validate_json(o.value) for o in outputs if o.topic == NAMES.audit]
    return ({k: v.decode() for k, v in dead[0].headers} if dead else None), decisions


def _dated(factory: IncidentFactory, shift: timedelta) -> DomesticAbuseIncident:
    incident = factory.incident("schools")
    when = FIXED_NOW + shift
    return incident.model_copy(update={"incident_at": when, "occurred_at": when, "attended_at": None})


@pytest.mark.parametrize(("shift", "says"), [
    (timedelta(days=400), "incident_at is in the future"),
    (timedelta(minutes=10), "incident_at is in the future"),
    (-timedelta(days=11 * 365), "incident_at is older than 90 days"),
])
def test_an_implausibly_dated_incident_is_dead_lettered_with_the_reason(
        partnership: Partnership, factory: IncidentFactory, shift: timedelta, says: str) -> None:
    """400 days ahead, 10 minutes ahead (beyond the 5-minute skew) and 11 years ago are refused, nothing routed."""
    dead, decisions = _route(partnership, _dated(factory, shift))
    assert dead is not None
    assert dead[DLQ_REASON] == "implausible-time"
    assert says in dead[DLQ_DETAIL]
    assert decisions == []


def test_a_late_but_plausible_incident_is_routed_with_its_incident_time(
        partnership: Partnership, factory: IncidentFactory) -> None:
    """23 days old is a late share, not a typo: routed, and each decision carries the incident time for the clock."""
    incident = _dated(factory, -timedelta(days=23))
    dead, decisions = _route(partnership, incident)
    assert dead is None
    assert decisions
    assert {d.incident_at for d in decisions} == {incident.incident_at}


def test_an_audited_backfill_admits_older_incidents_from_its_start_date(
        partnership: Partnership, factory: IncidentFactory) -> None:
    """With --backfill-from a year back, a 200-day-old incident is routed; one before the start still is not."""
    start = (FIXED_NOW - timedelta(days=365)).date()
    dead, decisions = _route(partnership, _dated(factory, -timedelta(days=200)), backfill_from=start)
    assert dead is None
    assert decisions
    dead, _ = _route(partnership, _dated(factory, -timedelta(days=400)), backfill_from=start)
    assert dead is not None
    assert dead[DLQ_REASON] == "implausible-time"


def test_the_backfill_fact_names_who_why_and_from_when() -> None:
    """The same authorisation restarted is one fact; its window is on the record."""
    args = {"window": PayloadWindow(), "backfill_from": date(2026, 6, 1), "by": "ops-1",
            "reason": "records-system migration", "producer": "safebus-router"}
    fact = backfill_authorised(**args, at=FIXED_NOW)  # type: ignore[arg-type]
    assert (fact.backfill_from, fact.authorised_by, fact.max_incident_age_days) == (date(2026, 6, 1), "ops-1", 90)
    assert backfill_authorised(**args, at=FIXED_NOW + timedelta(hours=1)).event_id == fact.event_id  # type: ignore[arg-type]


def test_a_backfill_without_a_reason_and_an_operator_is_refused() -> None:
    """An unaudited backfill does not start: exit 2, saying what is missing."""
    done = subprocess.run([sys.executable, "-m", "safebus", "processor", "run", "--backfill-from", "2026-01-01"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert done.returncode == 2
    assert "--backfill-reason" in done.stderr
    assert "--by" in done.stderr

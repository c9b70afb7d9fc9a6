"""
An event delivered again is decided exactly as the first time: the MARAC coordinator gets one referral, not two.

A crash between the router remembering a MARAC referral (its state and changelog are written with the
shares) and committing the event's offset redelivers the event.  The repeat criterion reads the
referrals remembered for the victim; before referrals were kept by event, the redelivered first referral
read its own and matched "repeat within 12 months" instead, a different clause and so a second referral
under a new id, which no receiver's deduplication could catch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from safebus.processors.engine import SharingEngine
from safebus.processors.facts import MemoryState, RouterState
from safebus.processors.state import SqliteRouterState
from safebus.schemas._base import Event
from safebus.schemas.police import RiskGrade
from tests.conftest import FIXED_NOW, Partnership
from tests.unit.processors.test_engine_golden import (
    INCIDENT_DAY,
    VICTIM,
    Scenario,
    _agreements,
    _assessment,
    _incident,
)

EVENTS: dict[str, tuple[Callable[[], Event], tuple[int, ...]]] = {
    # event, and the days ago of the victim's earlier incidents
    "a third standard-risk incident in 12 months": (lambda: _incident(Scenario(name="third")), (30, 200)),
    "a high-risk police incident": (lambda: _incident(Scenario(name="high risk", risk=RiskGrade.HIGH)), ()),
    "an IDVA's DASH of 18": (lambda: _assessment(18), ()),
}


def _states(tmp_path: Path) -> dict[str, RouterState]:
    return {"memory": MemoryState(), "sqlite": SqliteRouterState(tmp_path / "state.sqlite")}


@pytest.mark.parametrize("event_kind", sorted(EVENTS))
@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.parametrize("earlier_referral_days_ago", [None, 500, 100])
def test_a_redelivered_event_gets_the_same_decisions_and_one_marac_referral(
        event_kind: str, store: str, earlier_referral_days_ago: int | None, partnership: Partnership,
        tmp_path: Path) -> None:
    state = _states(tmp_path)[store]
    victim = partnership.tokeniser.person(first_name=VICTIM.first_name, surname=VICTIM.surname,
                                          date_of_birth=VICTIM.date_of_birth)
    if earlier_referral_days_ago is not None:  # a referral for another event: it still counts (or not) by its age
        state.record_marac_referral(victim, INCIDENT_DAY - timedelta(days=earlier_referral_days_ago),
                                    event_id="an-earlier-incident")
    event, earlier_incidents = EVENTS[event_kind]
    for n, days in enumerate(earlier_incidents):
        state.record_incident(victim, f"earlier-{n}", INCIDENT_DAY - timedelta(days=days))
    engine = SharingEngine(agreements=_agreements({}), directory=partnership.directory,
                           tokeniser=partnership.tokeniser, state=state)
    incident = event()

    first = engine.route(incident, decided_at=FIXED_NOW)
    again = engine.route(incident, decided_at=FIXED_NOW)

    marac = [d for d in first.decisions if d.recipient_kind == "marac" and d.outcome.value == "shared"]
    assert len(marac) == 1, "the event is one a MARAC coordinator must hear of"
    if earlier_incidents:  # referred for the escalation, or as a repeat of the referral 100 days ago
        assert marac[0].clause == ("2 repeat" if earlier_referral_days_ago == 100 else "3 escalation")
    assert [(d.decision_id, d.clause, d.outcome) for d in again.decisions] == \
        [(d.decision_id, d.clause, d.outcome) for d in first.decisions], "decided again as the first time"
    assert [s.payload.event_id for s in again.shares] == [s.payload.event_id for s in first.shares]

"""
Deciding one subject at a time gives exactly what deciding the whole event gives.

The partitioned router (ADR 0018) splits each event into one task per person
and decides each task on the worker that holds that person's state.  A school,
a MASH desk or a MARAC coordinator must see the same decisions, with the same
ids, whichever way the event was split: otherwise a redelivery through the
other path would look like a new share.
"""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safebus.processors.agreements import load_agreements
from safebus.processors.engine import RoutingResult, SharingEngine
from safebus.processors.facts import MemoryState
from safebus.producers.synthetic import HOUSEHOLD_KINDS, IncidentFactory
from safebus.schemas.police import DomesticAbuseIncident, RiskGrade
from tests.conftest import FIXED_NOW, Partnership

AGREEMENTS = load_agreements()


def _state(partnership: Partnership, incident: DomesticAbuseIncident, consent: str, prior: int,
           referred_days_ago: int | None) -> MemoryState:
    state = MemoryState()
    victim = next((a for a in incident.adults if a.role.value == "victim"), None)
    if victim:
        token = partnership.tokeniser.person(first_name=victim.first_name, surname=victim.surname,
                                             date_of_birth=victim.date_of_birth)
        state.consents[(token, "voluntary-sector-referral")] = consent
        for n in range(prior):
            state.record_incident(token, f"prior-{n}", incident.incident_at.date() - timedelta(days=25 * (n + 1)))
        if referred_days_ago is not None:
            state.record_marac_referral(token, incident.incident_at.date() - timedelta(days=referred_days_ago),
                                        event_id="earlier")
    return state


def _seen(result: RoutingResult) -> tuple[list[str], list[str]]:
    decisions = sorted(d.model_dump_json() for d in result.decisions)
    shares = sorted(f"{s.recipient.id}|{s.payload.model_dump_json()}|{s.subject_tokens}" for s in result.shares)
    return decisions, shares


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(HOUSEHOLD_KINDS), risk=st.sampled_from(list(RiskGrade)),
       consent=st.sampled_from(("given", "refused", "withdrawn", "none")), prior=st.integers(0, 4),
       referred=st.one_of(st.none(), st.integers(1, 400)))
def test_the_union_of_per_subject_routes_is_the_event_route(
        partnership: Partnership, seed: int, kind: str, risk: RiskGrade, consent: str, prior: int,
        referred: int | None) -> None:
    incident = IncidentFactory(random.Random(seed), now=FIXED_NOW).incident(kind).model_copy(
        update={"risk_grade": risk})

    def engine(state: MemoryState) -> SharingEngine:
        return SharingEngine(agreements=AGREEMENTS, directory=partnership.directory,
                             tokeniser=partnership.tokeniser, state=state)

    whole_state = _state(partnership, incident, consent, prior, referred)
    whole = engine(whole_state).route(incident, decided_at=FIXED_NOW)
    split_state = _state(partnership, incident, consent, prior, referred)
    split = engine(split_state)
    parts = [split.route_subject(incident, subject, decided_at=FIXED_NOW)
             for subjects in split.subjects(incident).values() for subject in subjects]
    union = RoutingResult(explanations=tuple(e for p in parts for e in p.explanations),
                          shares=tuple(s for p in parts for s in p.shares))

    assert _seen(union) == _seen(whole)
    assert split_state == whole_state, "the same history and referrals are remembered"


def test_a_subject_task_decides_only_about_its_subject(partnership: Partnership) -> None:
    factory = IncidentFactory(random.Random(7), now=FIXED_NOW)
    incident = next(i for i in (factory.incident("schools") for _ in range(50)) if len(i.children) > 1)
    engine = SharingEngine(agreements=AGREEMENTS, directory=partnership.directory, tokeniser=partnership.tokeniser)
    child = engine.subjects(incident)["child"][1]
    result = engine.route_subject(incident, child, decided_at=FIXED_NOW)
    assert result.decisions
    assert {tuple(d.subjects) for d in result.decisions} == {(child.token,)}

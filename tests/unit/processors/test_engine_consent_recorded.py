"""
Every decision records the consent it rested on: the purpose its clause tested, and the status read for it.

An information-governance officer reads a decision's consent status as the
basis of a consent-based share or refusal.  It must be the status of the very
purpose the agreement's clause tested — not of some other purpose the engine
happened to look up.  The expectation here is derived from the agreement files
themselves, clause by clause, independently of the engine.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from safebus.errors import ConfigError
from safebus.processors.agreements import Agreement, Rule, load_agreements
from safebus.processors.engine import SharingEngine, validate
from safebus.processors.explain import explain_event
from safebus.processors.facts import MemoryState
from safebus.schemas._base import Event
from safebus.schemas.consent import Purpose
from safebus.schemas.decision import SharingDecision
from safebus.schemas.police import RiskGrade
from tests.conftest import FIXED_NOW, Partnership
from tests.unit.processors.test_engine_golden import (
    CASE_SCENARIOS,
    INCIDENT_DAY,
    SCENARIOS,
    VICTIM,
    CaseScenario,
    Scenario,
    _incident,
)

STATUSES = ("given", "refused", "withdrawn", "none")
_AS_RECORDED = {"given": "given", "refused": "refused", "withdrawn": "withdrawn", "none": "not-sought"}
_BY_STANCE = {"must-not-be-sought": "not-sought", "not-required": "not-required"}


def _deciding_rules(agreement: Agreement, decision: SharingDecision) -> list[Rule]:
    """The clauses tried for the decision's subject, in order, up to and including the one that decided."""
    rule = next(r for r in agreement.rules if f"{r.clause} {r.name}" == decision.clause)
    tried = [r for r in agreement.rules if decision.about_event_type in r.applies_to and r.for_each == rule.for_each]
    return tried[:tried.index(rule) + 1]


def _expected(agreement: Agreement, decision: SharingDecision, consents: dict[str, str]) -> tuple[str | None, str]:
    """(purpose, status) as the agreement file says: the deciding clause's consent test, else the nearest before."""
    rules = _deciding_rules(agreement, decision)
    tested = [c.fact.removeprefix("victim.consent.") for r in reversed(rules) for c in r.when
              if c.fact.startswith("victim.consent.")]
    purpose = tested[0] if tested else None
    stance = agreement.consent_for(rules[-1])
    if stance in _BY_STANCE:
        return purpose, _BY_STANCE[stance]
    return purpose, _AS_RECORDED[consents[purpose]] if purpose else "not-sought"


def _victim(partnership: Partnership) -> str:
    return partnership.tokeniser.person(first_name=VICTIM.first_name, surname=VICTIM.surname,
                                        date_of_birth=VICTIM.date_of_birth)


def _route(partnership: Partnership, event: Event, scenario: Scenario | CaseScenario,
           consents: dict[str, str]) -> list[SharingDecision]:
    """Route `event` with the scenario's history and the victim's consent `consents` (purpose -> status)."""
    token, victim = partnership.tokeniser.person, _victim(partnership)
    state = MemoryState()
    state.consents.update({(victim, purpose): status for purpose, status in consents.items()})
    if isinstance(scenario, Scenario):
        for c in scenario.children:
            if c.first_name in scenario.enrolled:
                state.enrolments[token(first_name=c.first_name, surname=c.surname,
                                       date_of_birth=c.date_of_birth)] = scenario.enrolled[c.first_name]
        for n, days in enumerate(scenario.prior_incidents_days_ago):
            state.record_incident(victim, f"earlier-{n}", INCIDENT_DAY - timedelta(days=days))
    if scenario.marac_days_ago is not None:
        state.record_marac_referral(victim, INCIDENT_DAY - timedelta(days=scenario.marac_days_ago))
    agreements = tuple(a.model_copy(update={"options": {**a.options, **getattr(scenario, "options", {}).get(a.id, {})}})
                       for a in load_agreements())
    engine = SharingEngine(agreements=agreements, directory=partnership.directory, tokeniser=partnership.tokeniser,
                           state=state)
    return list(engine.route(event, decided_at=FIXED_NOW).decisions)


def _consent_worlds() -> list[dict[str, str]]:
    """Each purpose in each status, every other purpose in a different (decoy) status."""
    purposes = [p.value for p in Purpose]
    worlds = []
    for purpose, status in itertools.product(purposes, STATUSES):
        decoy = STATUSES[(STATUSES.index(status) + 1) % len(STATUSES)]
        worlds.append({p: status if p == purpose else decoy for p in purposes})
    return worlds


def test_every_clause_of_every_agreement_records_the_consent_it_tested(partnership: Partnership) -> None:
    """Over every clause of every agreement file, the recorded purpose and status are the ones the clause used."""
    agreements = {a.id: a for a in load_agreements()}
    corpus: list[tuple[Scenario | CaseScenario, Event]] = [(s, _incident(s)) for s in SCENARIOS]
    corpus += [(s, s.event()) for s in CASE_SCENARIOS]
    decided: set[tuple[str, str]] = set()
    recorded: set[tuple[str | None, str]] = set()
    checked = 0
    for (scenario, event), consents in itertools.product(corpus, _consent_worlds()):
        for decision in _route(partnership, event, scenario, consents):
            agreement = agreements[decision.agreement_id]
            expected = _expected(agreement, decision, consents)
            assert (decision.consent_purpose, decision.consent_status.value) == expected, (
                f"{scenario.name}: {decision.agreement_id} clause {decision.clause} with consent {consents}")
            decided.add((decision.agreement_id, decision.clause))
            recorded.add(expected)
            checked += 1
    every = {(a.id, f"{r.clause} {r.name}") for a in agreements.values() for r in a.rules}
    assert every <= decided, f"clauses never decided: {sorted(every - decided)}"
    assert {("voluntary-sector-referral", s) for s in ("given", "refused", "withdrawn", "not-sought")} <= recorded
    assert checked > 1000


def test_a_consent_based_referral_records_the_consent_it_was_given_on(partnership: Partnership) -> None:
    """The hub referral under clause 2 records 'given' for voluntary-sector referral, whatever IDVA consent says."""
    hub = SCENARIOS[[s.name for s in SCENARIOS].index("medium risk with consent: DA Hub")]
    consents = {"voluntary-sector-referral": "given", "idva-support": "refused"}
    [decision] = [d for d in _route(partnership, _incident(hub), hub, consents)
                  if d.agreement_id == "domestic-abuse-hub"]
    assert (decision.clause, decision.consent_purpose, decision.consent_status.value) == (
        "2 consent-given", "voluntary-sector-referral", "given")
    withdrawn = {"voluntary-sector-referral": "withdrawn", "idva-support": "given"}
    [refusal] = [d for d in _route(partnership, _incident(hub), hub, withdrawn)
                 if d.agreement_id == "domestic-abuse-hub"]
    assert (refusal.clause, refusal.consent_status.value) == ("3 consent-withdrawn", "withdrawn")


def test_the_explanation_names_the_consent_purpose(partnership: Partnership) -> None:
    """`safebus rules explain` shows the consent status with the purpose it is for."""
    victim = _victim(partnership)
    state = MemoryState(consents={(victim, "voluntary-sector-referral"): "given"})
    engine = SharingEngine(agreements=load_agreements(), directory=partnership.directory,
                           tokeniser=partnership.tokeniser, state=state)
    hub = next(s for s in SCENARIOS if s.risk is RiskGrade.MEDIUM and s.consent == "given")
    lines = explain_event(engine, _incident(hub), now=FIXED_NOW)
    assert any("consent: given (for voluntary-sector-referral)" in line for line in lines)


def test_a_clause_testing_two_consent_purposes_is_refused() -> None:
    """A clause may rest on one consent purpose only, so its decision can say which."""
    hub = next(a for a in load_agreements() if a.id == "domestic-abuse-hub")
    rule = hub.rules[1]
    both = rule.model_copy(update={"when": (*rule.when, rule.when[0].model_copy(
        update={"fact": "victim.consent.idva-support"}))})
    with pytest.raises(ConfigError, match="one purpose"):
        validate((hub.model_copy(update={"rules": (hub.rules[0], both, *hub.rules[2:])}),))

"""Properties of the sharing engine over generated incidents and states, not only examples."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safebus.processors.agreements import load_agreements
from safebus.processors.engine import ENCOMPASS_FIELDS, SharingEngine
from safebus.processors.facts import MemoryState
from safebus.producers.synthetic import HOUSEHOLD_KINDS, IncidentFactory
from safebus.schemas.decision import Outcome
from safebus.schemas.encompass import DELIVERY_FIELDS, EncompassNotification
from safebus.schemas.police import RiskGrade
from tests.conftest import FIXED_NOW, Partnership

AGREEMENTS = load_agreements()
CONSENT_STATES = ("given", "refused", "withdrawn", "none")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(HOUSEHOLD_KINDS),
       risk=st.sampled_from(list(RiskGrade)), consent=st.sampled_from(CONSENT_STATES),
       prior=st.integers(0, 4))
def test_shares_are_minimal_lawful_and_complete(
    partnership: Partnership, seed: int, kind: str, risk: RiskGrade, consent: str, prior: int
) -> None:
    """
    Whatever the household, risk, consent and history:
    a school receives only Encompass fields (never adults, narrative or risk);
    no consent-based share happens without live consent;
    every event yields at least one decision, and exactly one per agreement and subject.
    """
    incident = IncidentFactory(random.Random(seed), now=FIXED_NOW).incident(kind).model_copy(
        update={"risk_grade": risk})
    victim = next((a for a in incident.adults if a.role.value == "victim"), None)
    state = MemoryState()
    if victim:
        token = partnership.tokeniser.person(first_name=victim.first_name, surname=victim.surname,
                                             date_of_birth=victim.date_of_birth)
        state.consents[(token, "voluntary-sector-referral")] = consent
        for n in range(prior):
            state.record_incident(token, f"prior-{n}", incident.incident_at.date() - timedelta(days=20 * (n + 1)))
    engine = SharingEngine(agreements=AGREEMENTS, directory=partnership.directory, tokeniser=partnership.tokeniser,
                           state=state)
    result = engine.route(incident, decided_at=FIXED_NOW)

    for share in result.shares:
        if share.recipient.kind.value == "school":
            assert isinstance(share.payload, EncompassNotification)
            payload = share.payload.model_dump()
            assert set(payload) - DELIVERY_FIELDS == ENCOMPASS_FIELDS
            text = share.payload.model_dump_json()
            assert incident.narrative not in text
            assert f'"{incident.risk_grade.value}"' not in text
            for adult in incident.adults:
                assert f'"{adult.first_name}"' not in text.replace(f'"{share.payload.child_first_name}"', "")

    by_rule = {(a.id, r.clause): (a, r) for a in AGREEMENTS for r in a.rules}
    for decision in result.decisions:
        agreement, rule = by_rule[(decision.agreement_id, decision.clause.split(" ")[0])]
        if decision.outcome is not Outcome.WITHHELD and agreement.consent_for(rule) == "required":
            assert consent == "given", f"consent-based share {decision.clause} without consent ({consent})"

    assert result.decisions
    keys = [(d.agreement_id, tuple(d.subjects), d.correlation_id) for d in result.decisions
            if d.clause.split(" ")[0] not in {"1"} or d.agreement_id != "operation-encompass"]
    assert len(keys) == len(set(keys))

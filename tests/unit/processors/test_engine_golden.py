"""
The default agreement set as a golden table: each scenario, and the decisions it must produce.

A row names an incident (children, victim, risk), what the router already
knows (enrolments, consent, history, MARAC referrals, partnership options),
and the (agreement, clause, outcome, recipient) decisions expected.  Rows cover
every rule of every default agreement and its edges.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from safebus.directory import AgencyKind
from safebus.processors.agreements import Agreement, load_agreements
from safebus.processors.engine import SharingEngine
from safebus.processors.facts import MemoryState
from safebus.schemas import encompass, marac, risk
from safebus.schemas._base import Event, Person, event_metadata
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.police import (
    Adult,
    AdultRole,
    Child,
    CrimeStatus,
    DomesticAbuseIncident,
    Relationship,
    RiskGrade,
    RiskTool,
)
from safebus.schemas.sharing import CaseReferral
from tests.conftest import FIXED_NOW, Partnership

INCIDENT_DAY = FIXED_NOW.date()
VICTIM = Adult(
    first_name="Elsie",
    surname="Calloway",
    date_of_birth=date(1991, 4, 12),
    role=AdultRole.VICTIM,
    relationship=Relationship.PARENT,
)
SUSPECT = Adult(
    first_name="Reuben", surname="Garside", role=AdultRole.SUSPECT, relationship=Relationship.PARENTS_PARTNER
)


def child(*, age_days: int = 9 * 365, urn: str | None = "900101", present: bool = True, name: str = "Ivy") -> Child:
    """A child of `age_days` on the incident date."""
    return Child(
        first_name=name,
        surname="Calloway",
        date_of_birth=INCIDENT_DAY - timedelta(days=age_days),
        present=present,
        school_urn=urn,
    )


def years(n: int, *, minus_days: int = 0) -> int:
    """Days in `n` years before the incident date, less `minus_days` (exact, leap years included)."""
    born = INCIDENT_DAY.replace(year=INCIDENT_DAY.year - n)
    return (INCIDENT_DAY - born).days - minus_days


@dataclass(frozen=True)
class Scenario:
    """One row of the table."""

    name: str
    children: tuple[Child, ...] = ()
    risk: RiskGrade = RiskGrade.STANDARD
    adults: tuple[Adult, ...] = (VICTIM, SUSPECT)
    crime: bool = True
    enrolled: dict[str, str] = field(default_factory=dict)  # child first name -> URN or "home-educated"
    consent: str | None = None  # the victim's voluntary-sector-referral consent
    prior_incidents_days_ago: tuple[int, ...] = ()
    marac_days_ago: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    expect: tuple[tuple[str, str, str, str | None], ...] = ()  # (agreement, clause, outcome, recipient)
    absent: tuple[str, ...] = ()  # agreements that must make no decision


ENC, CSC, HUB, MARAC = "operation-encompass", "childrens-services-referral", "domestic-abuse-hub", "marac-referral"
SCHOOL, CSC_ID, HUB_ID, IDVA_ID, MARAC_ID, HEALTH_ID = (
    "school-900101",
    "northdale-childrens-services",
    "northdale-da-hub",
    "northdale-idva",
    "northdale-marac",
    "northdale-health",
)

SCENARIOS = [
    # Operation Encompass: who is notified.
    Scenario(
        "child at a partnership school, present",
        (child(),),
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL),),
    ),
    Scenario(
        "child not present is still notified",
        (child(present=False),),
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL),),
    ),
    Scenario(
        "non-crime incidents notify too",
        (child(),),
        crime=False,
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL),),
    ),
    Scenario(
        "the day before an 18th birthday is still a child",
        (child(age_days=years(18, minus_days=1)),),
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL),),
    ),
    Scenario(
        "an 18th birthday on the incident date is not",
        (child(age_days=years(18)),),
        expect=((ENC, "3.1 not-a-child", "withheld", None),),
    ),
    Scenario(
        "under school age without the opt-in",
        (child(age_days=years(3)),),
        expect=((ENC, "3.3 under-school-age", "withheld", None),),
    ),
    Scenario(
        "under school age with the opt-in goes to health",
        (child(age_days=years(3)),),
        options={ENC: {"early_years_opt_in": True}},
        expect=((ENC, "3.2 under-school-age-opted-in", "shared", HEALTH_ID),),
    ),
    Scenario(
        "a four-year-old in reception goes to the school",
        (child(age_days=years(4)),),
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL),),
    ),
    Scenario(
        "setting unknown: deferred to the MASH education desk",
        (child(urn=None),),
        expect=((ENC, "4.3 setting-unknown", "deferred", CSC_ID),),
    ),
    Scenario(
        "setting not on the bus: deferred to the MASH, never sent to it",
        (child(urn="900901"),),
        expect=((ENC, "4.3 setting-unknown", "deferred", CSC_ID),),
    ),
    Scenario(
        "electively home educated: the LA's officer",
        (child(urn="900101"),),
        enrolled={"Ivy": "home-educated"},
        expect=((ENC, "4.2 home-educated", "shared", CSC_ID),),
    ),
    Scenario(
        "enrolment moved: the new setting, not the officer's record",
        (child(urn="900101"),),
        enrolled={"Ivy": "900104"},
        expect=((ENC, "4.1 notify-setting", "shared", "school-900104"),),
    ),
    Scenario(
        "siblings each go to their own setting",
        (child(name="Ivy"), child(name="Kit", age_days=years(13), urn="900105")),
        expect=((ENC, "4.1 notify-setting", "shared", SCHOOL), (ENC, "4.1 notify-setting", "shared", "school-900105")),
    ),
    Scenario("no children: nothing to notify", (), expect=((ENC, "1 no-children", "withheld", None),)),
    # Children's services (PPN).
    Scenario(
        "children involved: PPN to children's services",
        (child(),),
        expect=((CSC, "1 children-involved", "shared", CSC_ID),),
    ),
    Scenario("no children: no PPN", (), expect=((CSC, "2 no-children", "withheld", None),)),
    Scenario(
        "a young adult (19) in the household is not a child: no PPN",
        (child(age_days=years(19)),),
        expect=((CSC, "2 no-children", "withheld", None), (ENC, "1 no-children", "withheld", None)),
    ),
    # Domestic Abuse Hub / IDVA and consent.
    Scenario(
        "high risk: IDVA referral without consent",
        (),
        risk=RiskGrade.HIGH,
        expect=((HUB, "1 high-risk-without-consent", "shared", IDVA_ID),),
    ),
    Scenario(
        "high risk even after consent was withdrawn (statutory basis)",
        (),
        risk=RiskGrade.HIGH,
        consent="withdrawn",
        expect=((HUB, "1 high-risk-without-consent", "shared", IDVA_ID),),
    ),
    Scenario(
        "medium risk with consent: DA Hub",
        (),
        risk=RiskGrade.MEDIUM,
        consent="given",
        expect=((HUB, "2 consent-given", "shared", HUB_ID),),
    ),
    Scenario("standard risk without consent: not referred", (), expect=((HUB, "4 no-consent", "withheld", None),)),
    Scenario("consent refused: not referred", (), consent="refused", expect=((HUB, "4 no-consent", "withheld", None),)),
    Scenario(
        "consent withdrawn stops consent-based referral",
        (),
        risk=RiskGrade.MEDIUM,
        consent="withdrawn",
        expect=((HUB, "3 consent-withdrawn", "withheld", None),),
    ),
    Scenario("no victim recorded: no victim-based decisions", (), adults=(SUSPECT,), absent=(HUB, MARAC)),
    # MARAC criteria.
    Scenario(
        "visible high risk: MARAC",
        (),
        risk=RiskGrade.HIGH,
        expect=((MARAC, "1 visible-high-risk", "shared", MARAC_ID),),
    ),
    Scenario("a first standard-risk incident: no MARAC", (), expect=((MARAC, "4 criteria-not-met", "withheld", None),)),
    Scenario(
        "third incident in 12 months: escalation",
        (),
        prior_incidents_days_ago=(30, 200),
        expect=((MARAC, "3 escalation", "shared", MARAC_ID),),
    ),
    Scenario(
        "an incident 13 months ago does not count",
        (),
        prior_incidents_days_ago=(30, 400),
        expect=((MARAC, "4 criteria-not-met", "withheld", None),),
    ),
    Scenario(
        "the threshold is the partnership's (2)",
        (),
        prior_incidents_days_ago=(30,),
        options={MARAC: {"escalation_threshold": 2}},
        expect=((MARAC, "3 escalation", "shared", MARAC_ID),),
    ),
    Scenario(
        "repeat within 12 months of the last referral, any risk",
        (),
        marac_days_ago=100,
        expect=((MARAC, "2 repeat", "shared", MARAC_ID),),
    ),
    Scenario(
        "a referral 13 months ago is not a repeat",
        (),
        marac_days_ago=400,
        expect=((MARAC, "4 criteria-not-met", "withheld", None),),
    ),
    Scenario(
        "high risk and children: school, PPN, IDVA and MARAC together",
        (child(),),
        risk=RiskGrade.HIGH,
        expect=(
            (ENC, "4.1 notify-setting", "shared", SCHOOL),
            (CSC, "1 children-involved", "shared", CSC_ID),
            (HUB, "1 high-risk-without-consent", "shared", IDVA_ID),
            (MARAC, "1 visible-high-risk", "shared", MARAC_ID),
        ),
    ),
]


def _agreements(options: dict[str, dict[str, Any]]) -> tuple[Agreement, ...]:
    return tuple(a.model_copy(update={"options": {**a.options, **options.get(a.id, {})}}) for a in load_agreements())


def _incident(s: Scenario) -> DomesticAbuseIncident:
    return DomesticAbuseIncident(
        **event_metadata(
            DomesticAbuseIncident,
            producer="northdale-police",
            occurred_at=FIXED_NOW,
            recorded_at=FIXED_NOW,
            event_id="0b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a",
        ),
        police_reference="NDP-2026-000123",
        incident_at=FIXED_NOW,
        crime_status=CrimeStatus.CRIME if s.crime else CrimeStatus.NON_CRIME,
        adults=s.adults,
        children=s.children,
        risk_grade=s.risk,
        risk_tool=RiskTool.DASH,
        narrative="Synthetic narrative.",
    )


def run(s: Scenario, partnership: Partnership) -> list[SharingDecision]:
    """Route the scenario's incident with its state and options."""
    token = partnership.tokeniser.person
    victim = token(first_name=VICTIM.first_name, surname=VICTIM.surname, date_of_birth=VICTIM.date_of_birth)
    state = MemoryState()
    for c in s.children:
        if c.first_name in s.enrolled:
            state.enrolments[token(first_name=c.first_name, surname=c.surname, date_of_birth=c.date_of_birth)] = (
                s.enrolled[c.first_name]
            )
    if s.consent:
        state.consents[(victim, "voluntary-sector-referral")] = s.consent
    for n, days in enumerate(s.prior_incidents_days_ago):
        state.record_incident(victim, f"earlier-{n}", INCIDENT_DAY - timedelta(days=days))
    if s.marac_days_ago is not None:
        state.record_marac_referral(victim, INCIDENT_DAY - timedelta(days=s.marac_days_ago))
    engine = SharingEngine(
        agreements=_agreements(s.options), directory=partnership.directory, tokeniser=partnership.tokeniser, state=state
    )
    return list(engine.route(_incident(s), decided_at=FIXED_NOW).decisions)


# Case events: risk assessments, practitioners' MARAC referrals, MARAC actions.

HIGH_JUDGEMENT = "Recent strangulation attempt and escalating threats; the assessor judges the risk high."


def _assessment(yes: int, *, level: str | None = None, judgement: bool = False) -> risk.RiskAssessmentCompleted:
    return risk.RiskAssessmentCompleted(
        **event_metadata(risk.RiskAssessmentCompleted, producer="northdale-idva", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, event_id="1b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a"),
        assessment_reference="RA-2026-0099", victim=VICTIM_PERSON, tool=risk.AssessmentTool.DASH_SAFELIVES,
        yes_count=yes, level=risk.RiskLevel(level) if level else risk.level_for(yes),
        professional_judgement=risk.ProfessionalJudgement(applied=True, rationale=HIGH_JUDGEMENT) if judgement
        else None, assessing_agency="northdale-idva", assessed_at=FIXED_NOW,
    )


def _marac_referral(criterion: str) -> marac.MaracReferralSubmitted:
    return marac.MaracReferralSubmitted(
        **event_metadata(marac.MaracReferralSubmitted, producer="northdale-idva", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, event_id="2b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a"),
        referral_reference="MR-2026-0042", referring_agency="northdale-idva",
        referrer=marac.Contact(name="IDVA Practitioner 4", email="idva4@northdale-idva.example"),
        referred_on=INCIDENT_DAY, victim=marac.Victim(**VICTIM_PERSON.model_dump(), safe_to_call=False),
        perpetrators=(Person(first_name="Reuben", surname="Garside"),),
        criterion=marac.Criterion(criterion),
        dash_yes_count=16 if criterion == "high-risk" else None,
        professional_judgement_rationale=HIGH_JUDGEMENT if criterion == "professional-judgement" else None,
        victim_informed=True, prior_referral_on=INCIDENT_DAY - timedelta(days=90) if criterion == "repeat" else None,
    )


def _action(owner: str) -> marac.MaracActionAssigned:
    return marac.MaracActionAssigned(
        **event_metadata(marac.MaracActionAssigned, producer="northdale-marac", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, event_id="3b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a"),
        action_id="MA-2026-0042-3", case_reference="MC-2026-0042", owner_agency=owner,
        description="Flag the address for an urgent response and review bail conditions.",
        due_date=INCIDENT_DAY + timedelta(days=14),
    )


def _action_update() -> marac.MaracActionUpdated:
    return marac.MaracActionUpdated(
        **event_metadata(marac.MaracActionUpdated, producer="northdale-police", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, event_id="4b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a"),
        action_id="MA-2026-0042-3", case_reference="MC-2026-0042", owner_agency="northdale-police",
        status=marac.ActionStatus.COMPLETE, note="Address flagged; bail conditions reviewed.", updated_on=INCIDENT_DAY,
    )


def _acknowledgement() -> encompass.EncompassAcknowledged:
    return encompass.EncompassAcknowledged(
        **event_metadata(encompass.EncompassAcknowledged, producer="school-900101", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, event_id="5b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a"),
        notification_id="6b8a3d52-5f4e-5d6a-9a3c-2f1e0d9c8b7a", setting_urn="900101",
        acknowledged_by=encompass.Acknowledger(staff_id="900101-ka", role=encompass.KeyAdultRole.KEY_ADULT),
        acknowledged_at=FIXED_NOW,
    )


VICTIM_PERSON = Person(first_name=VICTIM.first_name, surname=VICTIM.surname, date_of_birth=VICTIM.date_of_birth)
MR, MA = "marac-referral", "marac-actions"


@dataclass(frozen=True)
class CaseScenario:
    """One row about a case event."""

    name: str
    event: Callable[[], Event]
    marac_days_ago: int | None = None
    expect: tuple[tuple[str, str, str, str | None], ...] = ()
    released: frozenset[str] | None = None  # exactly the fields the share carries, when given


CASE_SCENARIOS = [
    CaseScenario("dash 15 is visible high risk", lambda: _assessment(15),
                 expect=((MR, "5 dash-visible-high-risk", "shared", "northdale-marac"),)),
    CaseScenario("dash 14 is the threshold", lambda: _assessment(14),
                 expect=((MR, "5 dash-visible-high-risk", "shared", "northdale-marac"),),
                 released=frozenset({"assessment_reference", "tool", "yes_count", "level", "assessing_agency",
                                     "assessed_at", "victim", "key_indicators"})),
    CaseScenario("dash 13 stays with the assessor", lambda: _assessment(13),
                 expect=((MR, "8 dash-below-threshold", "withheld", None),)),
    CaseScenario("dash 11 raised to high by professional judgement",
                 lambda: _assessment(11, level="high", judgement=True),
                 expect=((MR, "6 dash-judged-high", "shared", "northdale-marac"),)),
    CaseScenario("dash 8 within 12 months of a MARAC referral", lambda: _assessment(8), marac_days_ago=100,
                 expect=((MR, "7 dash-repeat", "shared", "northdale-marac"),)),
    CaseScenario("dash 8 after more than 12 months", lambda: _assessment(8), marac_days_ago=400,
                 expect=((MR, "8 dash-below-threshold", "withheld", None),)),
    CaseScenario("professional-judgement referral with its rationale",
                 lambda: _marac_referral("professional-judgement"),
                 expect=((MR, "9 professional-judgement", "shared", "northdale-marac"),)),
    CaseScenario("high-risk referral from a practitioner", lambda: _marac_referral("high-risk"),
                 expect=((MR, "10 practitioner-referral", "shared", "northdale-marac"),)),
    CaseScenario("repeat referral from a practitioner", lambda: _marac_referral("repeat"),
                 expect=((MR, "10 practitioner-referral", "shared", "northdale-marac"),)),
    CaseScenario("a police action goes to the police only", lambda: _action("northdale-police"),
                 expect=((MA, "2 owning-agency", "shared", "northdale-police"),),
                 released=frozenset({"action_id", "case_reference", "owner_agency", "description", "due_date"})),
    CaseScenario("an IDVA action goes to the IDVA service only", lambda: _action("northdale-idva"),
                 expect=((MA, "2 owning-agency", "shared", "northdale-idva"),)),
    CaseScenario("a school's action is not sent to the school", lambda: _action("school-900101"),
                 expect=((MA, "1 school-owned-action", "withheld", None),)),
    CaseScenario("an owner not on the bus", lambda: _action("rivermouth-housing"),
                 expect=((MA, "3 owner-not-on-the-bus", "withheld", None),)),
    CaseScenario("an action update goes to the coordinator", _action_update,
                 expect=((MA, "4 update-to-coordinator", "shared", "northdale-marac"),)),
    CaseScenario("a Key Adult's acknowledgement goes back to the police", _acknowledgement,
                 expect=(("operation-encompass", "5 acknowledgement-to-police", "shared", "northdale-police"),),
                 released=frozenset({"notification_id", "setting_urn", "acknowledged_at", "acknowledged_role"})),
]


def run_case(s: CaseScenario, partnership: Partnership) -> tuple[list[SharingDecision], list[Any]]:
    """Route one case event; return its decisions and the payloads it shares."""
    state = MemoryState()
    if s.marac_days_ago is not None:
        victim = partnership.tokeniser.person(first_name=VICTIM.first_name, surname=VICTIM.surname,
                                              date_of_birth=VICTIM.date_of_birth)
        state.record_marac_referral(victim, INCIDENT_DAY - timedelta(days=s.marac_days_ago))
    engine = SharingEngine(agreements=load_agreements(), directory=partnership.directory,
                           tokeniser=partnership.tokeniser, state=state)
    result = engine.route(s.event(), decided_at=FIXED_NOW)
    return list(result.decisions), [share.payload for share in result.shares]


@pytest.mark.parametrize("scenario", CASE_SCENARIOS, ids=lambda s: s.name)
def test_golden_case_events(scenario: CaseScenario, partnership: Partnership) -> None:
    """Each case event gets exactly the expected decision, and a share carries exactly its clause's fields."""
    decisions, payloads = run_case(scenario, partnership)
    got = {(d.agreement_id, d.clause, d.outcome.value, d.recipient) for d in decisions}
    assert set(scenario.expect) == got
    for payload in payloads:
        assert isinstance(payload, CaseReferral)
        assert payload.recipient in {r for *_, r in scenario.expect}
        if scenario.released is not None:
            assert set(payload.released) == scenario.released
    assert len(payloads) == sum(1 for *_, outcome, _ in scenario.expect if outcome == "shared")


def test_no_case_share_ever_reaches_a_school(partnership: Partnership) -> None:
    """Whatever a MARAC plan says, a school is given no case data by the bus (only Encompass alerts)."""
    schools = {a.id for a in partnership.directory.of_kind(AgencyKind.SCHOOL)}
    for school in schools:
        decisions, payloads = run_case(CaseScenario("school", functools.partial(_action, school)), partnership)
        assert payloads == []
        assert all(d.recipient is None for d in decisions)


def test_the_rationale_travels_only_with_judgement_referrals(partnership: Partnership) -> None:
    """The professional-judgement rationale is released to MARAC only where that is the criterion."""
    _, judged = run_case(CASE_SCENARIOS[6], partnership)
    _, high = run_case(CASE_SCENARIOS[7], partnership)
    assert judged[0].released["professional_judgement_rationale"] == HIGH_JUDGEMENT
    assert "professional_judgement_rationale" not in high[0].released


def test_the_table_has_at_least_thirty_scenarios_and_covers_every_clause() -> None:
    """Every clause of every default agreement is expected by some row."""
    assert len(SCENARIOS) >= 30
    rows = [s.expect for s in SCENARIOS] + [s.expect for s in CASE_SCENARIOS]
    expected = {(a, c) for expect in rows for a, c, _, _ in expect}
    every = {(a.id, f"{r.clause} {r.name}") for a in load_agreements() for r in a.rules}
    assert every <= expected, f"clauses without a scenario: {sorted(every - expected)}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_golden(scenario: Scenario, partnership: Partnership) -> None:
    """The scenario produces exactly the expected decisions (and none from agreements that must stay silent)."""
    decisions = run(scenario, partnership)
    got = {(d.agreement_id, d.clause, d.outcome.value, d.recipient) for d in decisions}
    for row in scenario.expect:
        assert row in got, f"missing {row}; got {sorted(got, key=str)}"
    for agreement in scenario.absent:
        assert not any(d.agreement_id == agreement for d in decisions)
    for d in decisions:
        assert d.lawful_basis, "every decision records its lawful basis"
        assert (d.outcome is Outcome.WITHHELD) == (d.fields_released == ())

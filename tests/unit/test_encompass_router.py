"""The Operation Encompass rule, as a school and an information-governance officer see it."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from safebus.errors import ConfigError
from safebus.processors.agreements import load_agreement
from safebus.processors.encompass import EncompassRouter, RoutingResult, age_on
from safebus.producers.synthetic import IncidentFactory
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import Outcome
from safebus.schemas.encompass import DELIVERY_FIELDS, EncompassNotification
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
from tests.conftest import FIXED_NOW, Partnership

INCIDENT_AT = FIXED_NOW - timedelta(hours=2)


def _router(partnership: Partnership) -> EncompassRouter:
    return EncompassRouter(agreement=load_agreement("operation-encompass"), directory=partnership.directory,
                           tokeniser=partnership.tokeniser)


def _incident(*children: Child, event_id: str = "0b8a3d52-5f4e-4d6a-9a3c-2f1e0d9c8b7a") -> DomesticAbuseIncident:
    return DomesticAbuseIncident(
        **event_metadata(DomesticAbuseIncident, producer="northdale-police", occurred_at=INCIDENT_AT,
                         recorded_at=FIXED_NOW, event_id=event_id),
        police_reference="NDP-2026-000123",
        crime_status=CrimeStatus.NON_CRIME,
        risk_tool=RiskTool.DASH,
        incident_at=INCIDENT_AT,
        adults=(Adult(first_name="Reuben", surname="Garside", role=AdultRole.SUSPECT,
                      relationship=Relationship.PARENTS_PARTNER),),
        children=children,
        narrative="Synthetic narrative.",
        risk_grade=RiskGrade.HIGH,
    )


def _child(*, born: date = date(2016, 3, 4), urn: str | None = "900101", present: bool = False) -> Child:
    return Child(first_name="Ivy", surname="Garside", date_of_birth=born, present=present, school_urn=urn)


def _route(partnership: Partnership, incident: DomesticAbuseIncident) -> RoutingResult:
    return _router(partnership).route(incident, decided_at=FIXED_NOW)


class TestWhoIsNotified:
    def test_child_at_partnership_school_is_notified_even_if_not_present(self, partnership: Partnership) -> None:
        """Encompass notifies for every linked child, present or not."""
        result = _route(partnership, _incident(_child(present=False)))
        assert [s.recipient.urn for s in result.shares] == ["900101"]
        assert result.shares[0].notification.child_present is False
        [decision] = result.decisions
        assert decision.outcome is Outcome.SHARED
        assert decision.clause == "notify-setting"
        assert decision.recipient == "school-900101"
        assert decision.output_id == result.shares[0].notification.notification_id

    def test_each_child_goes_to_their_own_school(self, partnership: Partnership) -> None:
        """Siblings at different settings each produce a notification to the right setting only."""
        result = _route(partnership, _incident(_child(urn="900101"), _child(born=date(2010, 1, 1), urn="900105")))
        assert sorted(s.recipient.urn or "" for s in result.shares) == ["900101", "900105"]

    def test_unknown_school_is_withheld_and_recorded(self, partnership: Partnership) -> None:
        """No school recorded: nothing is sent, and the decision says why."""
        result = _route(partnership, _incident(_child(urn=None)))
        assert result.shares == ()
        [decision] = result.decisions
        assert (decision.outcome, decision.clause, decision.recipient) == (Outcome.WITHHELD, "setting-unknown", None)
        assert decision.fields_released == ()
        assert "Art 6(1)(c)" in " ".join(decision.lawful_basis)

    def test_school_outside_the_directory_gets_nothing(self, partnership: Partnership) -> None:
        """An unverified recipient is never sent personal data."""
        result = _route(partnership, _incident(_child(urn="900901")))
        assert result.shares == ()
        assert result.decisions[0].clause == "setting-not-onboarded"

    def test_adults_only_household_still_yields_a_decision(self, partnership: Partnership) -> None:
        """Every event leaves a decision record, even when there is no one to notify."""
        result = _route(partnership, _incident())
        assert result.shares == ()
        assert [(d.clause, d.subject_token) for d in result.decisions] == [("no-children", None)]

    @pytest.mark.parametrize(
        ("born", "notified"),
        [
            (date(2008, 11, 19), True),  # turns 18 the day after the incident
            (date(2008, 11, 18), False),  # 18th birthday on the incident date
            (date(2000, 1, 1), False),
            (date(2026, 1, 1), True),  # a baby is still a child (age scope is the partnership's, issue 5)
        ],
    )
    def test_under_18_on_the_incident_date(self, partnership: Partnership, born: date, notified: bool) -> None:
        """The age limit is applied on the incident date, to the day."""
        result = _route(partnership, _incident(_child(born=born)))
        assert bool(result.shares) is notified
        if not notified:
            assert result.decisions[0].clause == "not-a-child"


class TestMinimalDisclosure:
    def test_notification_holds_exactly_the_agreement_fields(self, partnership: Partnership) -> None:
        """The school receives the agreement's fields and the delivery address, nothing else."""
        agreement = load_agreement("operation-encompass")
        [share] = _route(partnership, _incident(_child(present=True))).shares
        payload = share.notification.model_dump()
        assert set(payload) == set(agreement.fields) | DELIVERY_FIELDS
        assert payload["subjects"] == (), "a school is given no pseudonymous token"
        assert payload["child_first_name"] == "Ivy"
        assert payload["police_reference"] == "NDP-2026-000123"
        assert payload["incident_at"] == INCIDENT_AT

    def test_generated_incidents_never_leak_adult_details(
        self, partnership: Partnership, factory: IncidentFactory
    ) -> None:
        """Across many varied incidents, no share carries an adult's name, the narrative or the risk grade."""
        router = _router(partnership)
        for _ in range(300):
            incident = factory.incident()
            result = router.route(incident, decided_at=FIXED_NOW)
            for share in result.shares:
                text = share.notification.model_dump_json()
                for adult in incident.adults:
                    assert adult.first_name not in text.replace(share.notification.child_first_name, "")
                    assert adult.surname not in text.replace(share.notification.child_surname, "")
                assert incident.narrative not in text
                assert incident.risk_grade.value not in text
            assert len(result.decisions) == max(1, len(incident.children))

    def test_decisions_name_no_one(self, partnership: Partnership) -> None:
        """Audit decisions refer to the child by token only."""
        result = _route(partnership, _incident(_child()))
        text = " ".join(d.model_dump_json() for d in result.decisions)
        assert "Ivy" not in text
        assert "Garside" not in text
        assert "2016-03-04" not in text
        assert result.decisions[0].subject_token is not None
        assert result.decisions[0].subject_token.startswith("subj_")


class TestDeterminism:
    def test_reprocessing_gives_identical_ids(self, partnership: Partnership) -> None:
        """A redelivered event yields the same notification and decision ids, so receivers can deduplicate."""
        incident = _incident(_child(), _child(urn=None))
        first, second = _route(partnership, incident), _route(partnership, incident)
        assert [d.decision_id for d in first.decisions] == [d.decision_id for d in second.decisions]
        assert first.shares[0].notification == second.shares[0].notification

    def test_resent_incident_gives_the_same_alert(self, partnership: Partnership) -> None:
        """A force re-sending the same incident under a new event id does not create a second alert."""
        incident = _incident(_child())
        resent = incident.model_copy(update={"event_id": "5d0c7a1e-2b3f-4c4d-8e9f-0a1b2c3d4e5f"})
        first, second = _route(partnership, incident), _route(partnership, resent)
        assert first.shares[0].notification.notification_id == second.shares[0].notification.notification_id
        assert first.decisions[0].decision_id != second.decisions[0].decision_id


def test_age_on_counts_whole_years() -> None:
    """Ages change on the birthday itself, including leap-day birthdays in common years."""
    assert age_on(date(2010, 6, 15), date(2026, 6, 14)) == 15
    assert age_on(date(2010, 6, 15), date(2026, 6, 15)) == 16
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


def test_router_refuses_an_agreement_that_releases_an_unsourced_field(partnership: Partnership) -> None:
    """An agreement naming a field the incident does not carry stops start-up."""
    text = load_agreement("operation-encompass").model_dump_json().replace(
        '"child_present"]', '"child_present","adult_names"]'
    )
    agreement = load_agreement("edited", text=text)
    with pytest.raises(ConfigError, match="adult_names"):
        EncompassRouter(agreement=agreement, directory=partnership.directory, tokeniser=partnership.tokeniser)


def test_router_refuses_an_agreement_that_omits_a_notification_field(partnership: Partnership) -> None:
    """The agreement and the notification schema must agree field for field."""
    text = load_agreement("operation-encompass").model_dump_json().replace(',"child_present"]', "]")
    with pytest.raises(ConfigError, match="child_present"):
        EncompassRouter(agreement=load_agreement("edited", text=text), directory=partnership.directory,
                        tokeniser=partnership.tokeniser)


def test_notification_schema_rejects_extra_fields() -> None:
    """A field added to a notification by mistake fails validation instead of reaching a school."""
    with pytest.raises(ValueError, match="extra"):
        EncompassNotification.model_validate({
            **event_metadata(EncompassNotification, producer="safebus-router", occurred_at=FIXED_NOW,
                             recorded_at=FIXED_NOW),
            "notification_id": "n", "setting_urn": "900101", "child_first_name": "A", "child_surname": "B",
            "child_date_of_birth": date(2015, 1, 1), "police_reference": "NDP-2026-000001",
            "incident_at": datetime(2026, 1, 1, tzinfo=FIXED_NOW.tzinfo), "child_present": True,
            "risk_grade": "high",
        })

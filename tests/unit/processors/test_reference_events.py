"""Consent and enrolment events change what the router decides next, through its durable state."""

from __future__ import annotations

import json
import random
import uuid
from datetime import date, datetime, timedelta

import pytest

from safebus.app.wiring import Settings, build_handler, key_service_for
from safebus.consumers.audit.facts import fact_from_audit_record
from safebus.directory import AgencyKind
from safebus.envelope import seal_event
from safebus.errors import EnvelopeError
from safebus.producers.synthetic import IncidentFactory
from safebus.publisher import AgencyPublisher
from safebus.records import DLQ_REASON, Origin, Output, Record
from safebus.schemas import audit, consent, education
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.decision import SharingDecision
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.police import Adult, AdultRole, Child, Relationship, RiskGrade
from safebus.schemas.registry import Family
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

NAMES = TopicNames(prefix="t")
VICTIM = Adult(first_name="Elsie", surname="Calloway", date_of_birth=date(1991, 4, 12), role=AdultRole.VICTIM,
               relationship=Relationship.PARENT)
IVY = Child(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4), present=True, school_urn="900101")


def _publisher(p: Partnership, agency: str, kind: AgencyKind) -> AgencyPublisher:
    return AgencyPublisher(bootstrap="127.0.0.1:1", agency=p.keys(agency), kind=kind, router=p.router.public(),
                           names=NAMES, tokeniser=p.tokeniser, keys=key_service_for(p.state_dir),
                           clock=lambda: FIXED_NOW)


class Router:
    """The router's handler on a synthetic partnership, fed records like the agent would be."""

    def __init__(self, partnership: Partnership) -> None:
        self.p = partnership
        self.handler = build_handler(Settings(state_dir=partnership.state_dir, bootstrap="x", names=NAMES),
                                     clock=lambda: FIXED_NOW)
        self.offset = 0

    def feed(self, record: Output) -> list[Output]:
        self.offset += 1
        return self.handler.handle(record.value, Origin(topic=record.topic, partition=0, offset=self.offset))

    def incident(self, *, risk: RiskGrade = RiskGrade.MEDIUM) -> dict[str, SharingDecision]:


        base = IncidentFactory(random.Random(1), now=FIXED_NOW).incident("schools")
        incident = base.model_copy(update={"event_id": str(uuid.uuid4()), "adults": (VICTIM, *base.adults[1:]),
                                           "children": (IVY,), "risk_grade": risk})
        outputs = self.feed(_publisher(self.p, "northdale-police", AgencyKind.POLICE).seal(incident))
        decisions = [SharingDecision.model_validate_json(o.value) for o in outputs if o.topic == NAMES.audit]
        return {d.agreement_id: d for d in decisions if d.agreement_id != "operation-encompass" or
                d.clause.startswith("4.")}


def _victim_token(p: Partnership) -> str:
    return p.tokeniser.person(first_name=VICTIM.first_name, surname=VICTIM.surname,
                              date_of_birth=VICTIM.date_of_birth)


def _consent(p: Partnership, event_type: type[Event], *, at: datetime = FIXED_NOW, **fields: object) -> Event:
    """A consent event about the victim, parsed as a partner's JSON would be."""
    meta = event_metadata(event_type, producer="northdale-idva", occurred_at=at, recorded_at=FIXED_NOW)
    common = {"consent_id": "CN-1", "subject": _victim_token(p), "purpose": "voluntary-sector-referral",
              "recorded_by": {"agency": "northdale-idva", "staff_id": "IDVA-1"}, "how_obtained": "verbal"}
    return event_type.model_validate_json(json.dumps({**meta, **common, **fields}, default=str))


def test_consent_given_then_withdrawn_changes_the_hub_referral(partnership: Partnership) -> None:
    """With consent a medium-risk victim is referred to the hub; after withdrawal, the next incident is not."""
    router = Router(partnership)
    idva = _publisher(partnership, "northdale-idva", AgencyKind.IDVA)
    assert router.incident()["domestic-abuse-hub"].clause == "4 no-consent"

    given = _consent(partnership, consent.ConsentRecorded, given=True, recorded_on=FIXED_NOW,
                     scope={"recipient_kinds": ["da-hub"]}, at=FIXED_NOW - timedelta(days=2))
    changes = router.feed(idva.seal(given))
    assert [o.topic for o in changes] == [NAMES.router_state], "consent is state (replicated), not a share"
    assert router.incident()["domestic-abuse-hub"].clause == "2 consent-given"

    withdrawn = _consent(partnership, consent.ConsentWithdrawn, withdrawn_at=FIXED_NOW,
                         at=FIXED_NOW - timedelta(days=1))
    router.feed(idva.seal(withdrawn))
    after = router.incident()
    assert after["domestic-abuse-hub"].clause == "3 consent-withdrawn"
    assert after["childrens-services-referral"].outcome.value == "shared", "statutory shares continue"

    stale = _consent(partnership, consent.ConsentRecorded, given=True, recorded_on=FIXED_NOW,
                     scope={"recipient_kinds": ["da-hub"]}, at=FIXED_NOW - timedelta(days=5))
    router.feed(idva.seal(stale))
    assert router.incident()["domestic-abuse-hub"].clause == "3 consent-withdrawn", "older news never overrides"


def test_elective_home_education_redirects_the_notification(partnership: Partnership) -> None:
    """Once the LA records a child as home educated, Encompass goes to its officer, not the old school."""
    router = Router(partnership)
    assert router.incident()["operation-encompass"].recipient == "school-900101"
    la = _publisher(partnership, "northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES)
    ehe = education.ElectiveHomeEducationRecorded(
        **event_metadata(education.ElectiveHomeEducationRecorded, producer="northdale-childrens-services",
                         occurred_at=FIXED_NOW, recorded_at=FIXED_NOW),
        child=education.ChildIdentity(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4)),
        from_date=date(2026, 11, 1), la_officer=education.LaOfficer(name="Otis Redfern", email="ehe@nd.example"),
    )
    router.feed(la.seal(ehe))
    decision = router.incident()["operation-encompass"]
    assert (decision.clause, decision.recipient) == ("4.2 home-educated", "northdale-childrens-services")


def test_a_school_move_redirects_later_notifications_and_is_audited(partnership: Partnership) -> None:
    """After a move the next alert goes to the new setting, and the move itself is an audit fact (once)."""
    router = Router(partnership)
    assert router.incident()["operation-encompass"].recipient == "school-900101"
    school = _publisher(partnership, "school-900101", AgencyKind.SCHOOL)
    move = education.EnrolmentChanged(
        **event_metadata(education.EnrolmentChanged, producer="school-900101", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW),
        child=education.ChildIdentity(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4)),
        previous_setting_urn="900101", new_setting_urn="900103", effective_date=date(2026, 11, 23),
        reason=education.MoveReason.MOVED_SCHOOL,
    )
    sealed = school.seal(move)
    [fact] = [o for o in router.feed(sealed) if o.topic == NAMES.audit]
    moved = audit.EnrolmentMoved.model_validate_json(fact.value)
    assert (fact.topic, moved.previous_setting_urn, moved.new_setting_urn) == (NAMES.audit, "900101", "900103")
    assert moved.subjects == (partnership.tokeniser.person(first_name="Ivy", surname="Calloway",
                                                           date_of_birth=date(2016, 3, 4)),)
    assert "Ivy" not in fact.value.decode()
    redelivered = router.handler.handle(sealed.value, Origin(topic=sealed.topic, partition=0, offset=router.offset))
    assert [audit.EnrolmentMoved.model_validate_json(o.value).event_id for o in redelivered
            if o.topic == NAMES.audit] == [moved.event_id]
    assert router.incident()["operation-encompass"].recipient == "school-900103"


def test_an_event_on_another_familys_topic_is_refused(partnership: Partnership) -> None:
    """A genuine consent event copied onto the incident topic is dead-lettered as not permitted there."""
    router = Router(partnership)
    idva = _publisher(partnership, "northdale-idva", AgencyKind.IDVA)
    event = _consent(partnership, consent.ConsentRecorded, given=True, recorded_on=FIXED_NOW,
                     scope={"recipient_kinds": ["da-hub"]})
    topic = NAMES.ingress("northdale-idva", Family.DA_INCIDENT)
    misplaced = Output(topic=topic, key=b"k", value=seal_event(event, sender=partnership.keys("northdale-idva"),
                                                                recipient=partnership.router.public(), topic=topic,
                                                                now=FIXED_NOW))
    [output] = router.feed(misplaced)
    assert dict(output.headers)[DLQ_REASON] == b"not-permitted"
    assert idva.topic_for(event.event_type).endswith(".consent")


def _encompass_shares(outputs: list[Output]) -> dict[str, bytes]:
    """Egress notifications by key (the notification id)."""
    return {o.key.decode(): o.value for o in outputs if o.topic.endswith(".encompass-notification")}


def test_a_police_published_notification_is_routed_by_the_same_agreement(partnership: Partnership) -> None:
    """A force that publishes the notification itself reaches the same school, under the same clause."""
    router = Router(partnership)
    police = _publisher(partnership, "northdale-police", AgencyKind.POLICE)
    notification = EncompassNotification(
        **event_metadata(EncompassNotification, producer="northdale-police", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW),
        notification_id="police-side-id", setting_urn="900101", child_first_name=IVY.first_name,
        child_surname=IVY.surname, child_date_of_birth=IVY.date_of_birth, police_reference="NDP-2026-777777",
        incident_at=FIXED_NOW - timedelta(hours=2), child_present=True,
    )
    outputs = router.feed(police.seal(notification))
    decisions = [SharingDecision.model_validate_json(o.value) for o in outputs if o.topic == NAMES.audit]
    assert [(d.agreement_id, d.clause, d.recipient) for d in decisions] == [
        ("operation-encompass", "4.1 notify-setting", "school-900101")]
    assert decisions[0].about_event_type == "encompass.notification"
    assert len(_encompass_shares(outputs)) == 1


def test_an_incident_and_its_notification_give_the_school_one_alert(partnership: Partnership) -> None:
    """Published both ways, the child's alert has one id, so the school's inbox shows it once."""
    router = Router(partnership)
    police = _publisher(partnership, "northdale-police", AgencyKind.POLICE)
    incident = IncidentFactory(random.Random(3), now=FIXED_NOW).incident("schools").model_copy(
        update={"event_id": str(uuid.uuid4()), "children": (IVY,)})
    from_incident = _encompass_shares(router.feed(police.seal(incident)))
    notification = EncompassNotification(
        **event_metadata(EncompassNotification, producer="northdale-police", occurred_at=incident.occurred_at,
                         recorded_at=FIXED_NOW),
        notification_id="police-side-id", setting_urn="900101", child_first_name=IVY.first_name,
        child_surname=IVY.surname, child_date_of_birth=IVY.date_of_birth, police_reference=incident.police_reference,
        incident_at=incident.incident_at, child_present=IVY.present,
    )
    from_notification = _encompass_shares(router.feed(police.seal(notification)))
    assert set(from_incident) == set(from_notification)
    assert len(from_incident) == 1


def test_a_school_cannot_publish_a_notification(partnership: Partnership) -> None:
    """Only the police (and the router) may originate an Encompass notification."""
    school = _publisher(partnership, "school-900101", AgencyKind.SCHOOL)
    notification = EncompassNotification(
        **event_metadata(EncompassNotification, producer="school-900101", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW),
        notification_id="x", setting_urn="900101", child_first_name="A", child_surname="B",
        child_date_of_birth=date(2015, 1, 1), police_reference="NDP-2026-000001", incident_at=FIXED_NOW,
        child_present=True,
    )
    with pytest.raises(EnvelopeError, match=r"does not publish encompass\.notification"):
        school.seal(notification)


def _audit_facts(outputs: list[Output], event_type: str) -> list[Event]:
    """The audit facts of `event_type` among `outputs`, as the audit sequencer takes them into the log."""
    facts = [fact_from_audit_record(Record(topic=o.topic, partition=0, offset=n, key=o.key, value=o.value))
             for n, o in enumerate(outputs) if o.topic == NAMES.audit]
    return [f for f in facts if f.event_type == event_type]


@pytest.mark.parametrize("withdrawal_first", [False, True], ids=["consent-first", "withdrawal-first"])
def test_a_withdrawal_with_the_consents_timestamp_stops_the_hub_referral(partnership: Partnership,
                                                                          withdrawal_first: bool) -> None:
    """A batch export stamps consent and its withdrawal alike: the withdrawal stands, and the tie is audited."""
    router = Router(partnership)
    idva = _publisher(partnership, "northdale-idva", AgencyKind.IDVA)
    at = FIXED_NOW - timedelta(days=1)
    given = _consent(partnership, consent.ConsentRecorded, given=True, recorded_on=FIXED_NOW,
                     scope={"recipient_kinds": ["da-hub"]}, at=at)
    withdrawn = _consent(partnership, consent.ConsentWithdrawn, withdrawn_at=FIXED_NOW, at=at)
    outputs = [o for event in ((withdrawn, given) if withdrawal_first else (given, withdrawn))
               for o in router.feed(idva.seal(event))]
    decision = router.incident()["domestic-abuse-hub"]
    assert (decision.clause, decision.outcome.value, decision.recipient) == ("3 consent-withdrawn", "withheld", None)
    [fact] = _audit_facts(outputs, "audit.state-conflict")
    assert isinstance(fact, audit.StateConflict)
    assert (fact.kind, fact.purpose, fact.resolved_to) == ("consent", "voluntary-sector-referral", "withdrawn")
    assert set(fact.about_event_ids) == {given.event_id, withdrawn.event_id}


def _enrolment(event_type: type[Event], **fields: object) -> Event:
    at = FIXED_NOW - timedelta(days=1)
    meta = event_metadata(event_type, producer="northdale-childrens-services", occurred_at=at, recorded_at=at)
    ivy = {"first_name": "Ivy", "surname": "Calloway", "date_of_birth": "2016-03-04"}
    return event_type.model_validate_json(json.dumps({**meta, "child": ivy, **fields}, default=str))


@pytest.mark.parametrize("move_first", [False, True], ids=["enrolment-first", "move-first"])
def test_a_move_with_the_enrolments_timestamp_sends_the_next_alert_to_the_new_school(partnership: Partnership,
                                                                                     move_first: bool) -> None:
    """Enrolment and the move away from it, stamped alike: the alert goes to the new school, never the old."""
    router = Router(partnership)
    la = _publisher(partnership, "northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES)
    enrolment = _enrolment(education.EnrolmentRecorded, setting_urn="900101", from_date="2025-09-03")
    move = _enrolment(education.EnrolmentChanged, previous_setting_urn="900101", new_setting_urn="900103",
                      effective_date="2026-11-17", reason="moved-school")
    batch = (move, enrolment) if move_first else (enrolment, move)
    outputs = [o for event in batch for o in router.feed(la.seal(event))]
    assert _audit_facts(outputs, "audit.state-conflict") == [], "a move from the enrolment is its successor"
    assert router.incident()["operation-encompass"].recipient == "school-900103"


def test_conflicting_enrolments_at_one_instant_send_the_alert_to_the_mash_desk(partnership: Partnership) -> None:
    """Two schools for the same instant: the MASH education desk resolves it, not the school on the police record."""
    router = Router(partnership)
    la = _publisher(partnership, "northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES)
    outputs = [o for urn in ("900103", "900104") for o in router.feed(la.seal(
        _enrolment(education.EnrolmentRecorded, setting_urn=urn, from_date="2026-11-17")))]
    [fact] = _audit_facts(outputs, "audit.state-conflict")
    assert isinstance(fact, audit.StateConflict)
    assert (fact.kind, sorted(fact.values), fact.resolved_to) == ("enrolment", ["900103", "900104"], "unresolved")
    assert "Ivy" not in fact.model_dump_json()
    decision = router.incident()["operation-encompass"]
    assert (decision.clause, decision.outcome.value, decision.recipient) == (
        "4.3 setting-unknown", "deferred", "northdale-childrens-services")


def test_a_move_to_an_unknown_setting_sends_the_alert_to_the_mash_desk(partnership: Partnership) -> None:
    """The child left the area, destination unknown: the MASH desk, not the school still on the police record."""
    router = Router(partnership)
    la = _publisher(partnership, "northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES)
    router.feed(la.seal(_enrolment(education.EnrolmentChanged, previous_setting_urn="900101", new_setting_urn=None,
                                   effective_date="2026-11-17", reason="left-area")))
    decision = router.incident()["operation-encompass"]
    assert (decision.clause, decision.recipient) == ("4.3 setting-unknown", "northdale-childrens-services")

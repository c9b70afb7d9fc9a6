"""
One example payload per contract, built from the models so it is valid by construction.

Partners read these beside the schemas (``schemas/examples/*.json`` is generated
from here); tests validate them with an independent JSON Schema implementation.
Every name, reference and URN is synthetic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from safebus.schemas import (
    audit,
    consent,
    decision,
    dvds,
    education,
    encompass,
    marac,
    police,
    risk,
    safeguarding,
    sharing,
)
from safebus.schemas._base import Event, Person, event_metadata

__all__ = ["EXAMPLES"]

_AT = datetime(2026, 11, 18, 21, 40, tzinfo=UTC)
_RECORDED = _AT + timedelta(hours=1)
_SUBJECT = "subj_3f2a9c1d5e7b4a6c8d0e1f2a3b4c5d6e"


def _meta(model: type[Event], producer: str, n: int, **extra: Any) -> dict[str, Any]:
    return event_metadata(model, producer=producer, occurred_at=_AT, recorded_at=_RECORDED,
                          event_id=f"00000000-0000-4000-8000-{n:012d}", **extra)


_VICTIM = Person(first_name="Elsie", surname="Calloway", date_of_birth=date(1991, 4, 12))
_SUSPECT = Person(first_name="Reuben", surname="Garside", date_of_birth=date(1988, 9, 30))
_CHILD = Person(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4))
_CHILD_ID = education.ChildIdentity(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4),
                                    upn="A900101000123")
_RECORDER = consent.RecordedBy(agency="northdale-idva", staff_id="IDVA-07")


def _incident() -> Event:
    return police.DomesticAbuseIncident(
        **_meta(police.DomesticAbuseIncident, "northdale-police", 1),
        police_reference="NDP-2026-004512", incident_at=_AT, attended_at=_AT + timedelta(minutes=22),
        location=police.Address(line1="14 Larch Row", town="Northdale", postcode="ND4 7QX"),
        crime_status=police.CrimeStatus.CRIME, offence_codes=("8N/01",),
        adults=(
            police.Adult(first_name="Elsie", surname="Calloway", date_of_birth=date(1991, 4, 12),
                         role=police.AdultRole.VICTIM, relationship=police.Relationship.PARENT),
            police.Adult(first_name="Reuben", surname="Garside", date_of_birth=date(1988, 9, 30),
                         role=police.AdultRole.SUSPECT, relationship=police.Relationship.PARENTS_PARTNER),
        ),
        children=(police.Child(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4), present=True,
                               where_during_incident="upstairs bedroom", spoken_to=True,
                               voice_of_child="Said she heard shouting and hid.", welfare_check_made=True,
                               school_urn="900101", school_name_as_recorded="Hollowmere Primary"),),
        risk_grade=police.RiskGrade.HIGH, risk_tool=police.RiskTool.DARA,
        narrative="Synthetic example narrative.", actions=(police.PoliceAction.ARREST,),
    )


def _dapn() -> Event:
    return police.DapnIssued(
        **_meta(police.DapnIssued, "northdale-police", 2), notice_reference="DAPN-2026-0042",
        police_reference="NDP-2026-004512", issued_at=_RECORDED, perpetrator=_SUSPECT, victim=_VICTIM,
        conditions=("Not to attend 14 Larch Row",), expires_at=_RECORDED + timedelta(hours=48),
    )


def _dapo() -> Event:
    return police.DapoMade(
        **_meta(police.DapoMade, "northdale-police", 3), order_reference="DAPO-2026-0007",
        court="Northdale Family Court", made_on=date(2026, 11, 20), perpetrator=_SUSPECT, victim=_VICTIM,
        requirements=("No contact with the victim",), ends_on=date(2027, 11, 20), notification_requirements=True,
    )


def _notification() -> Event:
    nid = "5b1d9e0a-3c2f-5a7b-9d8e-1f0a2b3c4d5e"
    return encompass.EncompassNotification(
        **_meta(encompass.EncompassNotification, "safebus-router", 4, correlation_id=_incident().event_id),
        notification_id=nid, setting_urn="900101", child_first_name="Ivy", child_surname="Calloway",
        child_date_of_birth=date(2016, 3, 4), police_reference="NDP-2026-004512", incident_at=_AT,
        child_present=True,
    )


def _acknowledged() -> Event:
    return encompass.EncompassAcknowledged(
        **_meta(encompass.EncompassAcknowledged, "school-900101", 5),
        notification_id="5b1d9e0a-3c2f-5a7b-9d8e-1f0a2b3c4d5e", setting_urn="900101",
        acknowledged_by=encompass.Acknowledger(staff_id="HPS-DSL-1", role=encompass.KeyAdultRole.KEY_ADULT),
        acknowledged_at=_RECORDED + timedelta(hours=10),
    )


def _setting() -> Event:
    return education.EducationSettingRecorded(
        **_meta(education.EducationSettingRecorded, "northdale-childrens-services", 6), urn="900101",
        name="Hollowmere Primary School", kind=education.SettingKind.PRIMARY,
        local_authority="Northdale (synthetic)", agency_id="school-900101",
        key_adults=(education.KeyAdult(staff_id="HPS-DSL-1", name="Mabel Yardley", kind=education.KeyAdultKind.DSL,
                                       email="dsl@hollowmere.example"),),
        session_start="08:40",
        calendar=education.SessionCalendar(
            terms=(education.DateRange(first=date(2026, 9, 3), last=date(2026, 10, 23)),),
            inset_days=(date(2026, 9, 2),)),
    )


def _enrolment() -> Event:
    return education.EnrolmentRecorded(
        **_meta(education.EnrolmentRecorded, "northdale-childrens-services", 7), child=_CHILD_ID,
        setting_urn="900101", from_date=date(2021, 9, 6),
    )


def _enrolment_changed() -> Event:
    return education.EnrolmentChanged(
        **_meta(education.EnrolmentChanged, "northdale-childrens-services", 8), child=_CHILD_ID,
        previous_setting_urn="900101", new_setting_urn="900104", effective_date=date(2026, 11, 30),
        reason=education.MoveReason.MOVED_SCHOOL,
    )


def _ehe() -> Event:
    return education.ElectiveHomeEducationRecorded(
        **_meta(education.ElectiveHomeEducationRecorded, "northdale-childrens-services", 9), child=_CHILD_ID,
        from_date=date(2026, 12, 1), previous_setting_urn="900104",
        la_officer=education.LaOfficer(name="Otis Redfern", email="ehe@northdale.example"),
    )


def _risk() -> Event:
    return risk.RiskAssessmentCompleted(
        **_meta(risk.RiskAssessmentCompleted, "northdale-idva", 10), assessment_reference="RA-2026-311",
        victim=_VICTIM, tool=risk.AssessmentTool.DASH_SAFELIVES, yes_count=12, level=risk.RiskLevel.HIGH,
        professional_judgement=risk.ProfessionalJudgement(
            applied=True, rationale="Escalating threats to kill in the past week."),
        assessing_agency="northdale-idva", assessed_at=_RECORDED, key_indicators=("threats to kill",),
    )


def _marac_referral() -> Event:
    return marac.MaracReferralSubmitted(
        **_meta(marac.MaracReferralSubmitted, "northdale-idva", 11), referral_reference="MR-2026-0193",
        referring_agency="northdale-idva",
        referrer=marac.Contact(name="Wren Thackray", email="idva@northdale.example"),
        referred_on=date(2026, 11, 19),
        victim=marac.Victim(first_name="Elsie", surname="Calloway", date_of_birth=date(1991, 4, 12),
                            safe_to_call=False),
        perpetrators=(_SUSPECT,), children=(_CHILD,), criterion=marac.Criterion.HIGH_RISK, dash_yes_count=15,
        victim_informed=True, victim_consented=None,
    )


def _marac_listed() -> Event:
    return marac.MaracCaseListed(
        **_meta(marac.MaracCaseListed, "northdale-marac", 12), case_reference="MC-2026-0088",
        referral_reference="MR-2026-0193", meeting_date=date(2026, 12, 3),
        agencies_invited=("northdale-police", "northdale-idva", "northdale-childrens-services"),
    )


def _marac_research() -> Event:
    return marac.MaracResearchShared(
        **_meta(marac.MaracResearchShared, "northdale-childrens-services", 13), case_reference="MC-2026-0088",
        agency="northdale-childrens-services", summary="Child known to early help since 2025.",
        shared_on=date(2026, 12, 1),
    )


def _marac_action() -> Event:
    return marac.MaracActionAssigned(
        **_meta(marac.MaracActionAssigned, "northdale-marac", 14), action_id="MA-0088-01",
        case_reference="MC-2026-0088", owner_agency="northdale-police",
        description="Flag the address for an urgent response.", due_date=date(2026, 12, 5),
    )


def _marac_update() -> Event:
    return marac.MaracActionUpdated(
        **_meta(marac.MaracActionUpdated, "northdale-police", 15), action_id="MA-0088-01",
        case_reference="MC-2026-0088", owner_agency="northdale-police", status=marac.ActionStatus.COMPLETE,
        updated_on=date(2026, 12, 4),
    )


def _child_referral() -> Event:
    return safeguarding.ChildSafeguardingReferral(
        **_meta(safeguarding.ChildSafeguardingReferral, "northdale-police", 16), referral_reference="PPN-2026-7781",
        referring_agency="northdale-police", children=(_CHILD,), circumstances="Child present at a DA incident.",
        incident_reference="NDP-2026-004512", risk_grade=police.RiskGrade.HIGH, children_present=True,
        prior_incidents_12_months=2,
    )


def _adult_concern() -> Event:
    return safeguarding.AdultSafeguardingConcern(
        **_meta(safeguarding.AdultSafeguardingConcern, "northdale-health", 17), concern_reference="ASC-2026-55",
        referring_agency="northdale-health", adult=_VICTIM, care_and_support_needs=True,
        concern_summary="Carer reports controlling behaviour.", consent=safeguarding.AdultConsent.GIVEN,
    )


def _mash() -> Event:
    return safeguarding.MashDecision(
        **_meta(safeguarding.MashDecision, "northdale-childrens-services", 18), referral_reference="PPN-2026-7781",
        rating=safeguarding.Rag.AMBER, outcome=safeguarding.MashOutcome.SECTION_17, decided_at=_RECORDED,
        feedback_to_referrer="Assessment under s.17 opened.",
    )


def _consent() -> Event:
    return consent.ConsentRecorded(
        **_meta(consent.ConsentRecorded, "northdale-idva", 19, subjects=(_SUBJECT,)), consent_id="CN-2026-12",
        subject=_SUBJECT, purpose=consent.Purpose.VOLUNTARY_SECTOR_REFERRAL, given=True,
        scope=consent.Scope(recipient_kinds=("da-hub",), until=date(2027, 5, 1)), recorded_by=_RECORDER,
        how_obtained=consent.HowObtained.VERBAL, recorded_on=_RECORDED,
    )


def _consent_withdrawn() -> Event:
    return consent.ConsentWithdrawn(
        **_meta(consent.ConsentWithdrawn, "northdale-idva", 20, subjects=(_SUBJECT,)), consent_id="CN-2026-12",
        subject=_SUBJECT, purpose=consent.Purpose.VOLUNTARY_SECTOR_REFERRAL, recorded_by=_RECORDER,
        how_obtained=consent.HowObtained.WRITTEN, withdrawn_at=_RECORDED + timedelta(days=9),
    )


def _dvds_application() -> Event:
    return dvds.DvdsApplication(
        **_meta(dvds.DvdsApplication, "northdale-police", 21), application_reference="DVDS-2026-301",
        route=dvds.Route.RIGHT_TO_ASK, applicant=_VICTIM, person_at_risk=_VICTIM, subject=_SUSPECT,
        received_on=date(2026, 11, 2),
    )


def _dvds_decision() -> Event:
    return dvds.DvdsDecision(
        **_meta(dvds.DvdsDecision, "northdale-police", 22), application_reference="DVDS-2026-301",
        outcome=dvds.DvdsOutcome.DISCLOSE, decided_on=date(2026, 11, 24), forum="Northdale DVDS panel",
        disclosed_to=_VICTIM, rationale="Relevant prior convictions; disclosure necessary and proportionate.",
    )


def _decision() -> Event:
    return decision.SharingDecision(
        **_meta(decision.SharingDecision, "safebus-router", 23, correlation_id=_incident().event_id,
                subjects=(_SUBJECT,)),
        about_event_id=_incident().event_id, about_event_type="police.domestic-abuse-incident",
        about_producer="northdale-police", outcome=decision.Outcome.SHARED,
        purpose="Let the setting's Key Adult support the child.", recipient="school-900101",
        recipient_kind="school", reason="Every child under 18 ... is notified.", agreement_id="operation-encompass",
        agreement_version="1.0.0", clause="notify-setting",
        lawful_basis=("UK GDPR Art 6(1)(c) legal obligation",), consent_status=decision.ConsentStatus.NOT_SOUGHT,
        fields_released=("child_first_name", "child_surname"), output_id="5b1d9e0a-3c2f-5a7b-9d8e-1f0a2b3c4d5e",
        incident_at=_AT,
    )


def _referral() -> Event:
    return sharing.Referral(
        **_meta(sharing.Referral, "safebus-router", 25, correlation_id=_incident().event_id,
                subjects=(_SUBJECT,)),
        referral_id="00000000-0000-5000-8000-000000000025", recipient="northdale-childrens-services",
        agreement_id="childrens-services-referral", agreement_version="1.0.0", clause="1 children-involved",
        purpose="Let the MASH assess whether children need help or protection.",
        police_reference="NDP-2026-004512", incident_at=_AT,
        released={"risk_grade": "high", "children_present": True,
                  "children": ({"first_name": "Ivy", "surname": "Calloway", "date_of_birth": "2016-03-04",
                                "present": True},)},
    )


def _deadline() -> Event:
    return audit.DeadlineSet(
        **_meta(audit.DeadlineSet, "safebus-encompass-monitor", 37, subjects=(_SUBJECT,)),
        notification_id="00000000-0000-5000-8000-000000000021", setting_urn="900101", desk="setting",
        due_by=datetime(2026, 11, 19, 8, 55, tzinfo=UTC),
        calendar_version="sha256:bc2502aec608c825ceb670ec8c8878fca3f67cafeae93d62aec2063105c5e216",
        incident_at=datetime(2026, 11, 18, 21, 30, tzinfo=UTC), police_due_by=datetime(2026, 11, 19, 8, 55, tzinfo=UTC),
        shared_at=datetime(2026, 11, 18, 23, 5, tzinfo=UTC), shared_late_minutes=0,
    )


def _case_referral() -> Event:
    return sharing.CaseReferral(
        **_meta(sharing.CaseReferral, "safebus-router", 36, subjects=(_SUBJECT,)),
        referral_id="00000000-0000-5000-8000-000000000036", recipient="northdale-marac",
        agreement_id="marac-referral", agreement_version="1.1.0", clause="5 professional-judgement",
        purpose="Bring high-risk cases to a multi-agency meeting that plans the victim's and children's safety.",
        about_event_type="marac.referral-submitted", reference="MR-2026-0042",
        released={"criterion": "professional-judgement",
                  "professional_judgement_rationale": "Escalating controlling behaviour and a recent separation.",
                  "victim": ({"first_name": "Elsie", "surname": "Calloway", "date_of_birth": "1991-04-12"},)},
    )


def _received() -> Event:
    return sharing.ReferralReceived(
        **_meta(sharing.ReferralReceived, "northdale-childrens-services", 26),
        referral_id="00000000-0000-5000-8000-000000000025", recipient="northdale-childrens-services",
        received_by="MASH-04", received_at=_RECORDED + timedelta(hours=2),
    )


def _erased() -> Event:
    return decision.SubjectErased(
        **_meta(decision.SubjectErased, "safebus-router", 24, subjects=(_SUBJECT,)), subject=_SUBJECT,
        key_ids_destroyed=(f"{_SUBJECT}@2026-11",), requested_by="Information Governance Officer IG-3",
        reason="Erasure request upheld under UK GDPR Art 17; no retention duty applies.",
    )


_DIGEST = "9b2e8f0c4d1a7e3b5c6d8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e"


def _delivered() -> Event:
    return audit.Delivered(
        **_meta(audit.Delivered, "safebus-inbox", 27, subjects=(_SUBJECT,)),
        output_id="00000000-0000-5000-8000-000000000021", recipient="brookfield-primary",
        channel=audit.DeliveryChannel.SCHOOL_INBOX, delivered_at=_RECORDED + timedelta(seconds=2),
    )


def _dead_lettered() -> Event:
    return audit.DeadLettered(
        **_meta(audit.DeadLettered, "safebus-audit", 28), reason="bad-signature", stage="verify",
        detail="signature does not verify with any key of the producer", origin_topic="safebus.in.police.da-incident",
        origin_partition=0, origin_offset=41, about_event_id="00000000-0000-4000-8000-000000000001",
        content_sha256=_DIGEST,
    )


def _directory_entry() -> Event:
    return audit.DirectoryEntryPublished(
        **_meta(audit.DirectoryEntryPublished, "safebus-audit", 29), agency_id="brookfield-primary", kind="school",
        entry_sha256=_DIGEST, signed_at=_AT,
        keys=(audit.KeyGenerationState(key_id="brookfield-primary/2026-11-01", status="active"),),
    )


def _ruleset() -> Event:
    return audit.RulesetLoaded(
        **_meta(audit.RulesetLoaded, "safebus-router", 30), ruleset_sha256=_DIGEST,
        agreements=(audit.AgreementVersion(agreement_id="operation-encompass", version="2.1.0", sha256=_DIGEST),),
    )


def _viewed() -> Event:
    return audit.AuditViewed(
        **_meta(audit.AuditViewed, "safebus-audit", 31, subjects=(_SUBJECT,)), viewer="igo-1",
        viewer_role="information-governance", view="subject-chronology", parameters={"subject": _SUBJECT}, results=7,
    )


def _audit_acknowledged() -> Event:
    return audit.Acknowledged(
        **_meta(audit.Acknowledged, "brookfield-primary", 32, subjects=(_SUBJECT,)),
        notification_id="00000000-0000-5000-8000-000000000021", setting_urn="900101", staff_id="KA-1",
        role="key-adult", acknowledged_at=_RECORDED + timedelta(hours=10), due_by=_RECORDED + timedelta(hours=11),
    )


def _escalated() -> Event:
    return audit.Escalated(
        **_meta(audit.Escalated, "safebus-inbox", 33, subjects=(_SUBJECT,)),
        notification_id="00000000-0000-5000-8000-000000000021", setting_urn="900101",
        step=audit.EscalationStep.DEPUTIES, due_by=_RECORDED + timedelta(hours=11), notified=("KA-2",),
    )


def _backfill() -> Event:
    return audit.BackfillAuthorised(
        **_meta(audit.BackfillAuthorised, "safebus-router", 38), backfill_from=date(2026, 6, 1),
        authorised_by="ops-1", reason="Load the force's backlog after the records-system migration",
        max_incident_age_days=90,
    )


def _moved() -> Event:
    return audit.EnrolmentMoved(
        **_meta(audit.EnrolmentMoved, "safebus-router", 34, subjects=(_SUBJECT,)),
        about_event_id="00000000-0000-4000-8000-000000000007", previous_setting_urn="900101",
        new_setting_urn="900103", effective_date=date(2026, 11, 23), reason="moved-school",
    )


def _state_conflict() -> Event:
    return audit.StateConflict(
        **_meta(audit.StateConflict, "safebus-router", 38, subjects=(_SUBJECT,)),
        kind=audit.ConflictKind.CONSENT, purpose="voluntary-sector-referral", ordering_point=_AT,
        about_event_ids=("00000000-0000-4000-8000-000000000019", "00000000-0000-4000-8000-000000000020"),
        values=("given", "withdrawn"), resolved_to="withdrawn",
    )


def _transfer_confirmed() -> Event:
    return audit.FileTransferConfirmed(
        **_meta(audit.FileTransferConfirmed, "school-900101", 35, subjects=(_SUBJECT,)),
        transfer_id="00000000-0000-5000-8000-000000000034", setting_urn="900101", staff_id="900101-ka",
        confirmed_at=_RECORDED + timedelta(days=2),
    )


EXAMPLES: dict[str, Callable[[], Event]] = {
    builder().event_type: builder
    for builder in (
        _incident, _dapn, _dapo, _notification, _acknowledged, _setting, _enrolment, _enrolment_changed, _ehe,
        _risk, _marac_referral, _marac_listed, _marac_research, _marac_action, _marac_update, _child_referral,
        _adult_concern, _mash, _consent, _consent_withdrawn, _dvds_application, _dvds_decision, _decision, _erased,
        _referral, _received, _delivered, _dead_lettered, _directory_entry, _ruleset, _viewed, _audit_acknowledged,
        _escalated, _moved, _transfer_confirmed, _case_referral, _deadline, _state_conflict, _backfill,
    )
}
"""Example builders by event type."""

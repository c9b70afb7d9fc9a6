"""
Case events the agreements route besides police incidents: risk assessments and MARAC.

A police incident is routed per child, per victim and per event
(`safebus.processors.facts`).  Case events have their own shapes, so this
module says, for each case event type, who its subjects are, which fields a
clause may release and where each comes from, the event's own reference (for
deterministic ids and for the recipient), and the day it happened (for the
"MARAC referral in the last 12 months" state).

- ``risk.assessment-completed``: the victim; a DASH of 14 or more is visible
  high risk (MARAC, clause 4);
- ``marac.referral-submitted``: the victim; a practitioner's referral on any
  SafeLives criterion, professional judgement with its written rationale
  included (clause 5);
- ``marac.action-assigned`` / ``marac.action-updated``: the event; an action
  goes to its owning agency only, its updates to the MARAC coordinator
  (``marac-actions`` agreement);
- ``encompass.acknowledged``: the event; the police force learns that a Key
  Adult read its notification (Operation Encompass, clause 5) — who and when,
  by role, and nothing about the child.

The agreements name fields; what a field holds is defined here once, so a
clause can never release more than its list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from safebus.schemas._base import Event, Person
from safebus.schemas.encompass import EncompassAcknowledged
from safebus.schemas.marac import MaracActionAssigned, MaracActionUpdated, MaracReferralSubmitted
from safebus.schemas.risk import RiskAssessmentCompleted

__all__ = ["CASE_EVENTS", "CASE_SOURCES", "CaseSource", "Field", "TokenOf", "case_subject_token"]

Field = Callable[[Any], Any]
TokenOf = Callable[[str, str, date | None], str]


def _person(person: Person) -> dict[str, str | bool | None]:
    return {"first_name": person.first_name, "surname": person.surname,
            "date_of_birth": person.date_of_birth.isoformat() if person.date_of_birth else None}


def _people(people: tuple[Person, ...]) -> tuple[dict[str, str | bool | None], ...]:
    return tuple(_person(p) for p in people)


@dataclass(frozen=True, kw_only=True)
class CaseSource:
    """How the engine reads one case event type."""

    event_type: str
    subject_kind: str
    """``victim`` (one subject, tokenised from the named person) or ``event`` (no personal subject)."""
    person: Callable[[Any], Person] | None
    fields: dict[str, Field]
    reference: Callable[[Any], str]
    day: Callable[[Any], date]


_RISK = CaseSource(
    event_type="risk.assessment-completed", subject_kind="victim",
    person=lambda e: e.victim,
    fields={
        "assessment_reference": lambda e: e.assessment_reference,
        "tool": lambda e: e.tool.value,
        "yes_count": lambda e: e.yes_count,
        "level": lambda e: e.level.value,
        "assessing_agency": lambda e: e.assessing_agency,
        "assessed_at": lambda e: e.assessed_at.isoformat(),
        "victim": lambda e: (_person(e.victim),),
        "key_indicators": lambda e: "; ".join(e.key_indicators) or None,
        "professional_judgement_rationale": lambda e: e.professional_judgement.rationale
        if e.professional_judgement else None,
    },
    reference=lambda e: e.assessment_reference, day=lambda e: e.assessed_at.date(),
)

_MARAC_REFERRAL = CaseSource(
    event_type="marac.referral-submitted", subject_kind="victim",
    person=lambda e: e.victim,
    fields={
        "referral_reference": lambda e: e.referral_reference,
        "referring_agency": lambda e: e.referring_agency,
        "referred_on": lambda e: e.referred_on.isoformat(),
        "criterion": lambda e: e.criterion.value,
        "dash_yes_count": lambda e: e.dash_yes_count,
        "professional_judgement_rationale": lambda e: e.professional_judgement_rationale,
        "victim": lambda e: (_person(e.victim),),
        "victim_safe_to_call": lambda e: e.victim.safe_to_call,
        "perpetrators": lambda e: _people(e.perpetrators),
        "children": lambda e: _people(e.children),
        "victim_informed": lambda e: e.victim_informed,
        "victim_consented": lambda e: e.victim_consented,
        "prior_referral_on": lambda e: e.prior_referral_on.isoformat() if e.prior_referral_on else None,
    },
    reference=lambda e: e.referral_reference, day=lambda e: e.referred_on,
)

_ACTION_FIELDS: dict[str, Field] = {
    "action_id": lambda e: e.action_id,
    "case_reference": lambda e: e.case_reference,
    "owner_agency": lambda e: e.owner_agency,
}

_ACTION_ASSIGNED = CaseSource(
    event_type="marac.action-assigned", subject_kind="event", person=None,
    fields={**_ACTION_FIELDS, "description": lambda e: e.description, "due_date": lambda e: e.due_date.isoformat()},
    reference=lambda e: e.action_id, day=lambda e: e.occurred_at.date(),
)

_ACTION_UPDATED = CaseSource(
    event_type="marac.action-updated", subject_kind="event", person=None,
    fields={**_ACTION_FIELDS, "status": lambda e: e.status.value, "note": lambda e: e.note,
            "updated_on": lambda e: e.updated_on.isoformat()},
    reference=lambda e: f"{e.action_id}@{e.updated_on.isoformat()}:{e.status.value}",
    day=lambda e: e.updated_on,
)

_ACKNOWLEDGED = CaseSource(
    event_type="encompass.acknowledged", subject_kind="event", person=None,
    fields={"notification_id": lambda e: e.notification_id, "setting_urn": lambda e: e.setting_urn,
            "acknowledged_at": lambda e: e.acknowledged_at.isoformat(),
            "acknowledged_role": lambda e: e.acknowledged_by.role.value},
    reference=lambda e: e.notification_id, day=lambda e: e.acknowledged_at.date(),
)

CASE_SOURCES: dict[str, CaseSource] = {
    source.event_type: source
    for source in (_RISK, _MARAC_REFERRAL, _ACTION_ASSIGNED, _ACTION_UPDATED, _ACKNOWLEDGED)
}
"""Case event type -> how the engine reads it."""

CASE_EVENTS = (RiskAssessmentCompleted, MaracReferralSubmitted, MaracActionAssigned, MaracActionUpdated,
               EncompassAcknowledged)
"""The case event models the router routes."""


def case_subject_token(event: Event, token_of: TokenOf) -> str | None:
    """The token of the person a case event is about (None for events about no one)."""
    source = CASE_SOURCES[event.event_type]
    if source.person is None:
        return None
    person = source.person(event)
    return token_of(person.first_name, person.surname, person.date_of_birth)

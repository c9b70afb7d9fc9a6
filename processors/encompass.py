"""
The Operation Encompass rule: which child's setting is told, and with what.

A pure function of the incident, the directory and the agreement: no I/O, no
clock reads (the decision time is passed in), so the same inputs always give
the same decisions and ids.  That determinism is what lets an at-least-once
processor be *effectively once*: a redelivered incident yields byte-identical
ids, and every receiver deduplicates on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from safebus.directory import Agency, Directory
from safebus.errors import ConfigError
from safebus.processors.agreements import Agreement
from safebus.pseudonyms import Tokeniser
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import ConsentStatus, Outcome, SharingDecision
from safebus.schemas.encompass import DELIVERY_FIELDS, EncompassNotification
from safebus.schemas.police import Child, DomesticAbuseIncident

_IDS = uuid.UUID("6f1c2a52-6d0e-4c55-9a51-0c8f0a5e1b7d")
"""Namespace for deterministic (UUIDv5) notification and decision ids."""

ROUTED_CLAUSES = frozenset(
    {"notify-setting", "setting-unknown", "setting-not-onboarded", "not-a-child", "no-children"}
)

_CONSENT_STATUS = {
    "not-sought": ConsentStatus.NOT_SOUGHT,
    "required": ConsentStatus.GIVEN,
    "sought-not-required": ConsentStatus.NOT_REQUIRED,
}
"""The consent status a decision records under each agreement consent stance (consent rules: issue 5)."""

_Extractor = Callable[[DomesticAbuseIncident, Child], object]
_FIELD_SOURCES: dict[str, _Extractor] = {
    "child_first_name": lambda incident, child: child.first_name,
    "child_surname": lambda incident, child: child.surname,
    "child_date_of_birth": lambda incident, child: child.date_of_birth,
    "police_reference": lambda incident, child: incident.police_reference,
    "incident_at": lambda incident, child: incident.incident_at,
    "child_present": lambda incident, child: child.present,
}
"""Where each releasable field comes from.  An agreement may only name these."""


@dataclass(frozen=True, kw_only=True)
class Share:
    """A notification to deliver to one school."""

    recipient: Agency
    notification: EncompassNotification
    subject_token: str
    """The child's token: the notification is sealed under that child's data key."""


@dataclass(frozen=True, kw_only=True)
class RoutingResult:
    """Everything decided about one incident."""

    decisions: tuple[SharingDecision, ...]
    shares: tuple[Share, ...]


def age_on(date_of_birth: date, day: date) -> int:
    """Return a person's age in whole years on `day`."""
    before_birthday = (day.month, day.day) < (date_of_birth.month, date_of_birth.day)
    return day.year - date_of_birth.year - int(before_birthday)


class EncompassRouter:
    """Applies the Operation Encompass agreement to incidents."""

    def __init__(self, *, agreement: Agreement, directory: Directory, tokeniser: Tokeniser) -> None:
        """Check that the agreement names only fields we can source and clauses we route by."""
        agreement.require_clauses(ROUTED_CLAUSES)
        unknown = sorted(set(agreement.fields) - set(_FIELD_SOURCES))
        if unknown:
            raise ConfigError(f"agreement {agreement.id} releases fields no event carries: {', '.join(unknown)}")
        expected, released = set(EncompassNotification.model_fields) - DELIVERY_FIELDS, set(agreement.fields)
        if released != expected:
            raise ConfigError(
                f"agreement {agreement.id} v{agreement.version} fields do not match the notification schema "
                f"(missing {sorted(expected - released)}, extra {sorted(released - expected)})"
            )
        self.agreement = agreement
        self.directory = directory
        self.tokeniser = tokeniser
        self._router_id = directory.router().id

    def route(self, incident: DomesticAbuseIncident, *, decided_at: datetime) -> RoutingResult:
        """Return one decision per linked child (or one 'no children' decision) and the shares to make."""
        if not incident.children:
            return RoutingResult(
                decisions=(self._decision("no-children", incident, None, None, None, decided_at),),
                shares=(),
            )
        decisions: list[SharingDecision] = []
        shares: list[Share] = []
        for child in incident.children:
            token = self.tokeniser.person(
                first_name=child.first_name, surname=child.surname, date_of_birth=child.date_of_birth
            )
            school = self.directory.school_by_urn(child.school_urn) if child.school_urn else None
            if age_on(child.date_of_birth, incident.incident_at.date()) >= self.agreement.child_age_limit_years:
                clause = "not-a-child"
            elif child.school_urn is None:
                clause = "setting-unknown"
            elif school is None:
                clause = "setting-not-onboarded"
            else:
                clause = "notify-setting"
            if clause != "notify-setting" or school is None:
                decisions.append(self._decision(clause, incident, token, None, None, decided_at))
                continue
            notification = self._notification(incident, child, token, school, decided_at)
            shares.append(Share(recipient=school, notification=notification, subject_token=token))
            decisions.append(
                self._decision(clause, incident, token, school, notification.notification_id, decided_at)
            )
        return RoutingResult(decisions=tuple(decisions), shares=tuple(shares))

    def _notification(
        self, incident: DomesticAbuseIncident, child: Child, token: str, school: Agency, decided_at: datetime
    ) -> EncompassNotification:
        # Keyed on the police reference, not the event id: a force that re-sends
        # the same incident must not give the school a second alert.  The
        # child's token stays out: a school needs no pseudonym to act.
        notification_id = str(uuid.uuid5(_IDS, f"encompass|{incident.police_reference}|{token}|{school.urn}"))
        released = {name: _FIELD_SOURCES[name](incident, child) for name in self.agreement.fields}
        meta = event_metadata(
            EncompassNotification, producer=self._router_id, occurred_at=incident.incident_at,
            recorded_at=decided_at, event_id=notification_id, correlation_id=incident.event_id,
        )
        return EncompassNotification.model_validate(
            {**meta, "notification_id": notification_id, "setting_urn": school.urn, **released}
        )

    def _decision(
        self,
        clause_id: str,
        incident: DomesticAbuseIncident,
        token: str | None,
        school: Agency | None,
        output_id: str | None,
        decided_at: datetime,
    ) -> SharingDecision:
        clause = self.agreement.clause(clause_id)
        recipient = school.id if school else None
        decision_id = uuid.uuid5(_IDS, f"decision|{incident.event_id}|{token}|{clause_id}|{recipient}")
        meta = event_metadata(
            SharingDecision, producer=self._router_id, occurred_at=decided_at, recorded_at=decided_at,
            event_id=str(decision_id), correlation_id=incident.event_id, subjects=(token,) if token else (),
        )
        return SharingDecision(
            **meta,
            about_event_id=incident.event_id,
            about_event_type=incident.event_type,
            about_producer=incident.producer,
            outcome=clause.outcome,
            purpose=self.agreement.purpose,
            consent_status=_CONSENT_STATUS[self.agreement.consent],
            recipient=recipient,
            recipient_kind=self.agreement.recipient_kind,
            reason=clause.text,
            agreement_id=self.agreement.id,
            agreement_version=self.agreement.version,
            clause=clause_id,
            lawful_basis=self.agreement.lawful_basis,
            fields_released=self.agreement.fields if clause.outcome is Outcome.SHARED else (),
            output_id=output_id,
        )

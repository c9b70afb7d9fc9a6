"""
The sharing engine: applies every Information Sharing Agreement to an event.

For each agreement that covers the event type, for each subject of each kind
its rules address (each child, the victim, the event), the first rule whose
conditions all hold decides.  A decision that shares names a recipient agency
and exactly the rule's fields; the engine builds the payload from those fields
only (minimisation is construction, not filtering).  Every decision — shared,
deferred, escalated or withheld — becomes a `SharingDecision` with agreement,
version, clause, lawful basis and consent status.

Pure and deterministic: the same event, agreements, directory and state give
the same decisions and ids, which is what lets an at-least-once processor be
effectively once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from safebus.directory import Agency, AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.processors.agreements import Agreement, Condition, Rule
from safebus.processors.case_sources import CASE_SOURCES, case_subject_token
from safebus.processors.facts import (
    FACT_EVENTS,
    FACTS,
    INCIDENT_TYPES,
    RECIPIENTS,
    MemoryState,
    RouterState,
    Situation,
    Subject,
    Value,
    consent_purpose,
    subjects_of,
)
from safebus.pseudonyms import Tokeniser
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.decision import ConsentStatus, Outcome, SharingDecision
from safebus.schemas.encompass import DELIVERY_FIELDS, EncompassNotification
from safebus.schemas.police import AdultRole, Child, DomesticAbuseIncident
from safebus.schemas.sharing import CaseReferral, Referral

__all__ = [
    "ENCOMPASS_FIELDS",
    "FIELDS",
    "Explanation",
    "RoutingResult",
    "Share",
    "SharingEngine",
    "Trial",
    "consent_used",
    "day_of",
    "fields_for",
    "incident_view",
    "reference_of",
    "validate",
]

_IDS = uuid.UUID("6f1c2a52-6d0e-4c55-9a51-0c8f0a5e1b7d")
"""Namespace for deterministic (UUIDv5) ids of notifications, referrals and decisions."""

ENCOMPASS_FIELDS = frozenset(EncompassNotification.model_fields) - DELIVERY_FIELDS
"""The only fields a school may ever receive (the Operation Encompass minimum data set)."""

_Field = Callable[[DomesticAbuseIncident, Subject], Any]


def _people(incident: DomesticAbuseIncident, role: AdultRole) -> tuple[dict[str, str | bool | None], ...]:
    return tuple({"first_name": a.first_name, "surname": a.surname,
                  "date_of_birth": a.date_of_birth.isoformat() if a.date_of_birth else None,
                  "relationship": a.relationship.value} for a in incident.adults if a.role is role)


FIELDS: dict[str, dict[str, _Field]] = {
    "child": {
        "child_first_name": lambda i, s: s.child.first_name if s.child else None,
        "child_surname": lambda i, s: s.child.surname if s.child else None,
        "child_date_of_birth": lambda i, s: s.child.date_of_birth if s.child else None,
        "child_present": lambda i, s: s.child.present if s.child else None,
        "police_reference": lambda i, s: i.police_reference,
        "incident_at": lambda i, s: i.incident_at,
    },
    "victim": {
        "police_reference": lambda i, s: i.police_reference,
        "incident_at": lambda i, s: i.incident_at,
        "risk_grade": lambda i, s: i.risk_grade.value,
        "risk_tool": lambda i, s: i.risk_tool.value,
        "circumstances": lambda i, s: i.narrative,
        "victim": lambda i, s: _people(i, AdultRole.VICTIM),
        "suspects": lambda i, s: _people(i, AdultRole.SUSPECT),
        "children": lambda i, s: tuple({"first_name": c.first_name, "surname": c.surname,
                                        "date_of_birth": c.date_of_birth.isoformat(), "present": c.present}
                                       for c in i.children),
    },
    "event": {},
}
"""Releasable fields by subject kind, and where each comes from in a police incident."""
FIELDS["event"] = {name: source for name, source in FIELDS["victim"].items() if name not in {"victim"}}
FIELDS["event"]["crime_status"] = lambda i, s: i.crime_status.value
FIELDS["event"]["children_present"] = lambda i, s: any(c.present for c in i.children)

_CONSENT = {"must-not-be-sought": ConsentStatus.NOT_SOUGHT, "not-required": ConsentStatus.NOT_REQUIRED}
_CONSENT_BY_STATE = {"given": ConsentStatus.GIVEN, "refused": ConsentStatus.REFUSED,
                     "withdrawn": ConsentStatus.WITHDRAWN, "none": ConsentStatus.NOT_SOUGHT}


@dataclass(frozen=True, kw_only=True)
class Share:
    """A payload to deliver to one recipient, sealed under its subject's key."""

    recipient: Agency
    payload: Event
    subject_tokens: tuple[str, ...]
    """Whose data the payload holds: it is sealed under each of their keys."""


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One rule tried for one subject: which conditions held, with the facts' values."""

    rule: Rule
    checks: tuple[tuple[Condition, Value, bool], ...]

    @property
    def matched(self) -> bool:
        """Whether every condition held."""
        return all(ok for _, _, ok in self.checks)


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """Why one decision came out as it did: every rule tried, in order, until one matched."""

    agreement: Agreement
    subject: Subject
    trials: tuple[Trial, ...]
    decision: SharingDecision


@dataclass(frozen=True, kw_only=True)
class RoutingResult:
    """Everything decided about one event, and why."""

    explanations: tuple[Explanation, ...]
    shares: tuple[Share, ...]

    @property
    def decisions(self) -> tuple[SharingDecision, ...]:
        """One decision per (agreement, subject)."""
        return tuple(e.decision for e in self.explanations)


def incident_view(notification: EncompassNotification) -> DomesticAbuseIncident:
    """
    The one-child incident a police-published Encompass notification stands for.

    Only rules that list ``encompass.notification`` apply to it, and the
    notification id is derived from police reference, child and setting as on
    the incident path, so a force that publishes both the incident and its
    notification gives the school one alert.  Built without validation: it is
    a view for the engine, never published.
    """
    child = Child(first_name=notification.child_first_name, surname=notification.child_surname,
                  date_of_birth=notification.child_date_of_birth, present=notification.child_present,
                  school_urn=notification.setting_urn)
    return DomesticAbuseIncident.model_construct(
        event_id=notification.event_id, event_type=notification.event_type, schema_version=notification.schema_version,
        producer=notification.producer, occurred_at=notification.occurred_at, recorded_at=notification.recorded_at,
        correlation_id=notification.correlation_id, subjects=(), police_reference=notification.police_reference,
        incident_at=notification.incident_at, adults=(), children=(child,), narrative="",
    )


def validate(agreements: tuple[Agreement, ...]) -> None:
    """Refuse agreements that name facts, recipients or fields the engine does not know, or overshare to schools."""
    for agreement in agreements:
        for rule in agreement.rules:
            where = f"agreement {agreement.id} v{agreement.version} clause {rule.clause} ({rule.name})"
            for condition in rule.when:
                if isinstance(condition.value, str) and condition.value.startswith("option:") and (
                        condition.value.removeprefix("option:") not in agreement.options):
                    raise ConfigError(f"{where}: no option {condition.value!r} in the agreement's [options]")
                if condition.fact.startswith("option."):
                    if condition.fact.removeprefix("option.") not in agreement.options:
                        raise ConfigError(f"{where}: no option {condition.fact!r} in the agreement's [options]")
                    continue
                if condition.fact not in FACTS:
                    raise ConfigError(f"{where}: unknown fact {condition.fact!r} (known: {', '.join(sorted(FACTS))})")
                unsupported = sorted(set(rule.applies_to) - FACT_EVENTS[condition.fact])
                if unsupported:
                    raise ConfigError(f"{where}: fact {condition.fact} cannot be computed for {', '.join(unsupported)}")
                kind = FACTS[condition.fact][0]
                if kind not in (rule.for_each, "event"):
                    raise ConfigError(f"{where}: fact {condition.fact} is about a {kind}, the rule about a "
                                      f"{rule.for_each}")
            purposes = {p for c in rule.when if (p := consent_purpose(c.fact))}
            if len(purposes) > 1:
                raise ConfigError(f"{where}: a clause tests consent for one purpose, so its decision can record "
                                  f"which (it tests {', '.join(sorted(purposes))})")
            if rule.recipient is not None and rule.recipient not in RECIPIENTS:
                raise ConfigError(f"{where}: unknown recipient {rule.recipient!r}")
            for event_type in rule.applies_to:
                available = fields_for(event_type, rule.for_each)
                unknown = sorted(set(rule.fields) - set(available))
                if unknown:
                    raise ConfigError(f"{where}: fields not available for a {rule.for_each} of {event_type}: "
                                      f"{', '.join(unknown)}")
            if rule.recipient_kind == "school" and rule.fields and set(rule.fields) != ENCOMPASS_FIELDS:
                raise ConfigError(f"{where}: a school receives exactly the Encompass fields "
                                  f"({', '.join(sorted(ENCOMPASS_FIELDS))})")


def fields_for(event_type: str, kind: str) -> dict[str, Callable[[Event, Subject], Any]]:
    """The fields a clause about a `kind` subject of `event_type` may release, and their sources."""
    if event_type in INCIDENT_TYPES:
        return FIELDS.get(kind, {})  # type: ignore[return-value] # incident sources take the incident
    source = CASE_SOURCES.get(event_type)
    if source is None or source.subject_kind != kind:
        return {}
    return {name: _ignoring_subject(read) for name, read in source.fields.items()}


def _ignoring_subject(read: Callable[[Any], Any]) -> Callable[[Event, Subject], Any]:
    def field(event: Event, _subject: Subject) -> Any:
        return read(event)

    return field


def consent_used(trials: tuple[Trial, ...]) -> tuple[str | None, Value]:
    """
    The consent purpose a decision rests on, and the status the engine read for it.

    That is the purpose the deciding clause tested; a clause that tests no
    consent (a catch-all such as "no consent recorded") rests on the nearest
    clause tried before it that did, since the decision fell through that
    test.  The status is the value the condition saw, not a second look-up, so
    the record says exactly what the rule used.  (None, None) when no clause
    tried tested consent.
    """
    for trial in reversed(trials):
        for condition, value, _ in trial.checks:
            if (purpose := consent_purpose(condition.fact)) is not None:
                return purpose, value
    return None, None


def reference_of(event: Event) -> str:
    """The event's own reference, which ids of what it causes derive from (re-sends give the same ids)."""
    if isinstance(event, DomesticAbuseIncident):
        return event.police_reference
    return CASE_SOURCES[event.event_type].reference(event)


def day_of(event: Event) -> date:
    """The day the event is about (for 12-month histories)."""
    if isinstance(event, DomesticAbuseIncident):
        return event.incident_at.date()
    return CASE_SOURCES[event.event_type].day(event)


class SharingEngine:
    """Applies a validated set of agreements to police incidents and case events."""

    def __init__(self, *, agreements: tuple[Agreement, ...], directory: Directory, tokeniser: Tokeniser,
                 state: RouterState | None = None) -> None:
        """Validate the agreements against what the engine can compute; raise ConfigError if they do not fit."""
        validate(agreements)
        self.agreements = agreements
        self.directory = directory
        self.tokeniser = tokeniser
        self.state: RouterState = state if state is not None else MemoryState()

    def subjects(self, event: Event) -> dict[str, list[Subject]]:
        """
        Whom the rules decide on for `event`, by kind: each child, the victim, the event itself.

        The router splits an event into one routing task per person (ADR 0018),
        keyed by that person's token, so each decision reads only that person's
        state; this is the list it splits by.
        """
        def token_of(first: str, surname: str, born: date | None) -> str:
            return self.tokeniser.person(first_name=first, surname=surname, date_of_birth=born)

        if isinstance(event, DomesticAbuseIncident):
            return subjects_of(event, token_of)
        if event.event_type in CASE_SOURCES:
            kind = CASE_SOURCES[event.event_type].subject_kind
            subjects: dict[str, list[Subject]] = {"child": [], "victim": [],
                                                  "event": [Subject(kind="event", token=None)]}
            if kind == "victim":
                subjects["victim"] = [Subject(kind="victim", token=case_subject_token(event, token_of))]
            return subjects
        raise ConfigError(f"the engine does not route {event.event_type}")

    def route(self, incident: Event, *, decided_at: datetime) -> RoutingResult:
        """
        Every decision about `incident`, why, and the shares they make.

        Steps: (1) remember the incident in each victim's history (by event id,
        so a redelivery does not count twice) — "incidents in 12 months"
        includes this one; (2) decide, agreement by agreement and subject by
        subject; (3) build each share from its rule's fields only; (4) remember
        MARAC referrals, by event, which the repeat criterion reads (never
        counting the event's own, so a redelivery is decided as the first time).
        """
        return self._route(incident, self.subjects(incident), decided_at)

    def route_subject(self, event: Event, subject: Subject, *, decided_at: datetime) -> RoutingResult:
        """
        What `route` decides about one of the event's subjects (one of `subjects(event)`), reading only its state.

        The union over every subject is `route`'s result, with the same ids:
        a decision's id and its output's id depend on the event, agreement,
        subject, clause and recipient, never on which task made it.
        """
        only = {kind: [subject] if kind == subject.kind else [] for kind in ("child", "victim", "event")}
        return self._route(event, only, decided_at)

    def _route(self, incident: Event, subjects: dict[str, list[Subject]], decided_at: datetime) -> RoutingResult:
        # (1)
        if isinstance(incident, DomesticAbuseIncident):
            for victim in subjects["victim"]:
                if victim.token:
                    self.state.record_incident(victim.token, incident.event_id, incident.incident_at.date())
        # (2)
        explanations = self._explain(incident, subjects, decided_at)
        # (3)
        shares = [share for e in explanations if (share := self._share(incident, e, decided_at)) is not None]
        # (4)
        for e in explanations:
            if e.decision.recipient_kind == "marac" and e.decision.outcome is Outcome.SHARED and e.subject.token:
                self.state.record_marac_referral(e.subject.token, day_of(incident), event_id=incident.event_id)
        return RoutingResult(explanations=tuple(explanations), shares=tuple(shares))

    def _explain(self, incident: Event, subjects: dict[str, list[Subject]],
                 decided_at: datetime) -> list[Explanation]:
        explanations = []
        for agreement in self.agreements:
            rules = [r for r in agreement.rules if incident.event_type in r.applies_to]
            for kind in dict.fromkeys(r.for_each for r in rules):
                for subject in subjects[kind]:
                    explanation = self._decide(agreement, [r for r in rules if r.for_each == kind], incident,
                                               subject, decided_at)
                    if explanation is not None:
                        explanations.append(explanation)
        return explanations

    def _decide(self, agreement: Agreement, rules: list[Rule], incident: Event, subject: Subject,
                decided_at: datetime) -> Explanation | None:
        situation = Situation(event=incident, subject=subject, directory=self.directory, state=self.state)
        trials = []
        for rule in rules:
            checks = []
            for condition in rule.when:
                value = self._fact(agreement, condition, situation)
                expected = condition.value
                if isinstance(expected, str) and expected.startswith("option:"):
                    condition = condition.model_copy(update={"value": agreement.options[expected[7:]]})
                checks.append((condition, value, condition.holds(value)))
            trial = Trial(rule=rule, checks=tuple(checks))
            trials.append(trial)
            if trial.matched:
                recipient = RECIPIENTS[rule.recipient](situation) if rule.recipient else None
                return Explanation(agreement=agreement, subject=subject, trials=tuple(trials),
                                   decision=self._record(agreement, tuple(trials), incident, subject, recipient,
                                                         decided_at))
        if subject.kind == "event":
            return None  # event-level clauses are optional: people are always decided on one by one
        raise ConfigError(f"agreement {agreement.id}: no rule decides for a {subject.kind} "
                          f"(add a final catch-all clause)")

    @staticmethod
    def _fact(agreement: Agreement, condition: Condition, situation: Situation) -> Value:
        if condition.fact.startswith("option."):
            return agreement.options[condition.fact.removeprefix("option.")]
        return FACTS[condition.fact][1](situation)

    def _record(self, agreement: Agreement, trials: tuple[Trial, ...], incident: Event, subject: Subject,
                recipient: Agency | None, decided_at: datetime) -> SharingDecision:
        rule = trials[-1].rule
        outcome, reason = rule.outcome, rule.text
        if outcome is not Outcome.WITHHELD and recipient is None:
            outcome, reason = Outcome.WITHHELD, f"{rule.text} Not shared: no {rule.recipient} is in the directory."
        elif (outcome is not Outcome.WITHHELD and recipient is not None and recipient.kind is AgencyKind.SCHOOL
              and rule.recipient_kind != "school"):
            # A selector such as "action.owner" can name a school: it still gets only Encompass data.
            outcome, reason = Outcome.WITHHELD, (f"{rule.text} Not shared: a school receives only the Operation "
                                                 "Encompass fields on this bus.")
            recipient = None
        decision_id = uuid.uuid5(_IDS, f"decision|{incident.event_id}|{agreement.id}|{subject.kind}|{subject.token}"
                                       f"|{rule.clause}|{recipient.id if recipient else None}")
        purpose, used = consent_used(trials)
        consent = _CONSENT.get(agreement.consent_for(rule)) or _CONSENT_BY_STATE[str(used or "none")]
        return SharingDecision(
            **event_metadata(SharingDecision, producer=self.directory.router().id, occurred_at=decided_at,
                             recorded_at=decided_at, event_id=str(decision_id), correlation_id=incident.event_id,
                             subjects=(subject.token,) if subject.token else ()),
            about_event_id=incident.event_id, about_event_type=incident.event_type,
            about_producer=incident.producer, outcome=outcome, purpose=agreement.purpose,
            recipient=recipient.id if recipient and outcome is not Outcome.WITHHELD else None,
            recipient_kind=rule.recipient_kind, reason=reason, agreement_id=agreement.id,
            agreement_version=agreement.version, clause=f"{rule.clause} {rule.name}",
            lawful_basis=agreement.lawful_basis.lines(), consent_status=consent, consent_purpose=purpose,
            fields_released=rule.fields if outcome is not Outcome.WITHHELD else (),
            output_id=self._output_id(agreement, rule, incident, subject, recipient)
            if outcome is not Outcome.WITHHELD and recipient else None,
            incident_at=getattr(incident, "incident_at", None),
        )

    @staticmethod
    def _output_id(agreement: Agreement, rule: Rule, incident: Event, subject: Subject,
                   recipient: Agency | None) -> str:
        if rule.recipient_kind == "school" and recipient is not None and isinstance(incident, DomesticAbuseIncident):
            # Keyed on the police reference, not the event id: a force that
            # re-sends the same incident must not give the school a second alert.
            return str(uuid.uuid5(_IDS, f"encompass|{incident.police_reference}|{subject.token}|{recipient.urn}"))
        return str(uuid.uuid5(_IDS, f"referral|{agreement.id}|{rule.clause}|{reference_of(incident)}"
                                    f"|{subject.token}|{recipient.id if recipient else None}"))

    def _share(self, incident: Event, explanation: Explanation, decided_at: datetime) -> Share | None:
        decision = explanation.decision
        if decision.outcome is Outcome.WITHHELD or decision.recipient is None or decision.output_id is None:
            return None
        recipient = self.directory.get(decision.recipient)
        rule = explanation.trials[-1].rule
        assert recipient is not None
        if not isinstance(incident, DomesticAbuseIncident):
            return self._case_share(incident, explanation, recipient, decided_at)
        released = {name: FIELDS[rule.for_each][name](incident, explanation.subject) for name in rule.fields}
        meta = event_metadata(
            EncompassNotification if rule.recipient_kind == "school" else Referral,
            producer=self.directory.router().id, occurred_at=incident.incident_at, recorded_at=decided_at,
            event_id=decision.output_id, correlation_id=incident.event_id,
        )
        payload: Event
        if rule.recipient_kind == "school":
            payload = EncompassNotification.model_validate(
                {**meta, "notification_id": decision.output_id, "setting_urn": recipient.urn, **released})
        else:
            payload = Referral.model_validate({
                **meta, "referral_id": decision.output_id, "recipient": recipient.id,
                "agreement_id": decision.agreement_id, "agreement_version": decision.agreement_version,
                "clause": decision.clause, "purpose": decision.purpose, "police_reference": incident.police_reference,
                "incident_at": incident.incident_at,
                "released": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in released.items()},
            })
        tokens = (explanation.subject.token,) if rule.for_each == "child" and explanation.subject.token else tuple(
            dict.fromkeys([*([explanation.subject.token] if explanation.subject.token else []), *incident.subjects]))
        return Share(recipient=recipient, payload=payload, subject_tokens=tokens)

    def _case_share(self, event: Event, explanation: Explanation, recipient: Agency, decided_at: datetime) -> Share:
        """A case referral: exactly the clause's fields of a risk assessment or MARAC event."""
        decision = explanation.decision
        rule = explanation.trials[-1].rule
        fields = fields_for(event.event_type, rule.for_each)
        released = {name: fields[name](event, explanation.subject) for name in rule.fields}
        assert decision.output_id is not None
        payload = CaseReferral(
            **event_metadata(CaseReferral, producer=self.directory.router().id, occurred_at=event.occurred_at,
                             recorded_at=decided_at, event_id=decision.output_id, correlation_id=event.event_id),
            referral_id=decision.output_id, recipient=recipient.id, agreement_id=decision.agreement_id,
            agreement_version=decision.agreement_version, clause=decision.clause, purpose=decision.purpose,
            about_event_type=event.event_type, reference=reference_of(event)[:100], released=released,
        )
        tokens = tuple(dict.fromkeys([*([explanation.subject.token] if explanation.subject.token else []),
                                      *event.subjects]))
        return Share(recipient=recipient, payload=payload, subject_tokens=tokens)

"""
The facts sharing rules may test, the recipients they may name, and the state behind them.

Agreements refer to facts by name (``child.age``, ``victim.incidents_12m``);
this module is the one place those names get their meaning, so an agreement
cannot test something the engine does not compute (start-up refuses unknown
names).  Facts come from the event itself and from `RouterState`: enrolments,
consent, incident history and MARAC referrals, keyed by pseudonymous tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from safebus.directory import Agency, AgencyKind, Directory
from safebus.processors.case_sources import CASE_SOURCES
from safebus.processors.ordering import MOVED_AWAY, UNRESOLVED
from safebus.schemas._base import Event
from safebus.schemas.consent import Purpose
from safebus.schemas.marac import MaracReferralSubmitted
from safebus.schemas.police import AdultRole, Child, DomesticAbuseIncident
from safebus.schemas.risk import RiskAssessmentCompleted

__all__ = [
    "CONSENT_FACT_PREFIX",
    "FACTS",
    "FACT_EVENTS",
    "INCIDENT_TYPES",
    "RECIPIENTS",
    "MemoryState",
    "RouterState",
    "Situation",
    "Subject",
    "Value",
    "age_on",
    "consent_purpose",
    "fact",
    "subjects_of",
]

Value = str | int | bool | None


def age_on(date_of_birth: date, day: date) -> int:
    """A person's age in whole years on `day`."""
    before_birthday = (day.month, day.day) < (date_of_birth.month, date_of_birth.day)
    return day.year - date_of_birth.year - int(before_birthday)


class RouterState(Protocol):
    """What the router remembers between events (by subject token)."""

    def enrolment(self, child_token: str) -> str | None:
        """
        The URN a child is enrolled at, ``"home-educated"``, None if unknown, or a setting not to trust.

        `UNRESOLVED`: changes for the same instant disagree; `MOVED_AWAY`: the
        child left its setting for one not known.  Then no setting is trusted
        (not even the one on the police record, which may be the old school)
        until a later change settles it.
        """
        ...

    def consent(self, subject_token: str, purpose: str) -> str:
        """``given``, ``refused``, ``withdrawn`` or ``none``."""
        ...

    def incidents_since(self, subject_token: str, since: date) -> int:
        """How many incidents involving the subject were recorded on or after `since`."""
        ...

    def last_marac_referral(self, subject_token: str, *, excluding_event: str | None = None) -> date | None:
        """
        When the subject was last referred to MARAC, not counting the referral made for `excluding_event`.

        A decision excludes its own event: redelivered after its referral was remembered, an event must
        be decided as the first time (a first referral, not a "repeat" of itself under a new id).
        """
        ...

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """Remember an incident involving the subject (idempotent per event id)."""
        ...

    def record_marac_referral(self, subject_token: str, day: date, *, event_id: str | None = None) -> None:
        """Remember that the subject was referred to MARAC on `day` for `event_id` (None: not known)."""
        ...


@dataclass
class MemoryState:
    """`RouterState` held in memory (tests, and the router until its tables land)."""

    enrolments: dict[str, str] = field(default_factory=dict)
    consents: dict[tuple[str, str], str] = field(default_factory=dict)
    incidents: dict[str, dict[str, date]] = field(default_factory=dict)
    marac_referrals: dict[str, dict[str | None, date]] = field(default_factory=dict)
    """Subject -> the event each referral was made for (None: not known) -> its day."""

    def enrolment(self, child_token: str) -> str | None:
        """See `RouterState`."""
        return self.enrolments.get(child_token)

    def consent(self, subject_token: str, purpose: str) -> str:
        """See `RouterState`."""
        return self.consents.get((subject_token, purpose), "none")

    def incidents_since(self, subject_token: str, since: date) -> int:
        """See `RouterState`."""
        return sum(day >= since for day in self.incidents.get(subject_token, {}).values())

    def last_marac_referral(self, subject_token: str, *, excluding_event: str | None = None) -> date | None:
        """See `RouterState`."""
        days = [day for event, day in self.marac_referrals.get(subject_token, {}).items()
                if event is None or event != excluding_event]
        return max(days, default=None)

    def record_incident(self, subject_token: str, event_id: str, day: date) -> None:
        """See `RouterState`."""
        self.incidents.setdefault(subject_token, {})[event_id] = day

    def record_marac_referral(self, subject_token: str, day: date, *, event_id: str | None = None) -> None:
        """See `RouterState`."""
        referrals = self.marac_referrals.setdefault(subject_token, {})
        referrals[event_id] = max(day, referrals.get(event_id, day))


@dataclass(frozen=True, kw_only=True)
class Subject:
    """Who a decision is about: one child, the victim, or the event as a whole."""

    kind: str
    token: str | None
    child: Child | None = None


@dataclass(frozen=True, kw_only=True)
class Situation:
    """Everything facts are computed from for one subject of one event."""

    event: Event
    subject: Subject
    directory: Directory
    state: RouterState

    @property
    def incident(self) -> DomesticAbuseIncident:
        """The event as a police incident (incident facts are only ever asked of incident rules)."""
        if not isinstance(self.event, DomesticAbuseIncident):
            raise TypeError(f"an incident fact was asked of a {self.event.event_type}")
        return self.event


def _year_before(day: date) -> date:
    return day.replace(year=day.year - 1) if not (day.month == 2 and day.day == 29) else day.replace(
        year=day.year - 1, day=28)


def _child_setting(s: Situation) -> str:
    child, token = s.subject.child, s.subject.token
    enrolled = s.state.enrolment(token) if token else None
    if enrolled == "home-educated":
        return "home-educated"
    if enrolled in (UNRESOLVED, MOVED_AWAY):
        return "unknown"  # a conflicting or open-ended move: the MASH education desk resolves it, not the old school
    urn = enrolled or (child.school_urn if child else None)
    if urn is None:
        return "unknown"
    return "onboarded" if s.directory.school_by_urn(urn) else "not-onboarded"


def _child_age(s: Situation) -> int | None:
    child = s.subject.child
    return age_on(child.date_of_birth, s.incident.incident_at.date()) if child else None


def _victim_incidents(s: Situation) -> int | None:
    if s.subject.token is None:
        return None
    return s.state.incidents_since(s.subject.token, _year_before(s.incident.incident_at.date()))


def _victim_referred_12m(s: Situation) -> bool:
    last = s.state.last_marac_referral(s.subject.token, excluding_event=s.event.event_id) if s.subject.token \
        else None
    return last is not None and last >= _year_before(s.incident.incident_at.date())


CONSENT_FACT_PREFIX = "victim.consent."
"""A fact named ``victim.consent.<purpose>`` is the victim's consent status for that purpose."""


def consent_purpose(fact_name: str) -> str | None:
    """The consent purpose a fact tests (``victim.consent.idva-support`` -> ``idva-support``), or None."""
    return fact_name.removeprefix(CONSENT_FACT_PREFIX) if fact_name.startswith(CONSENT_FACT_PREFIX) else None


def _consent(purpose: str) -> Callable[[Situation], Value]:
    return lambda s: s.state.consent(s.subject.token, purpose) if s.subject.token else "none"


def _dash_yes_count(s: Situation) -> Value:
    event = s.event
    if isinstance(event, RiskAssessmentCompleted):
        return event.yes_count
    return event.dash_yes_count if isinstance(event, MaracReferralSubmitted) else None


def _owner_kind(s: Situation) -> Value:
    owner = getattr(s.event, "owner_agency", None)
    agency = s.directory.get(owner) if isinstance(owner, str) else None
    return agency.kind.value if agency else "unknown"


def _event_day(s: Situation) -> date:
    return s.incident.incident_at.date() if isinstance(s.event, DomesticAbuseIncident) else (
        CASE_SOURCES[s.event.event_type].day(s.event))


def _victim_referred_12m_any(s: Situation) -> bool:
    last = s.state.last_marac_referral(s.subject.token, excluding_event=s.event.event_id) if s.subject.token \
        else None
    return last is not None and last >= _year_before(_event_day(s))


FACTS: dict[str, tuple[str, Callable[[Situation], Value]]] = {
    "child.age": ("child", _child_age),
    "child.setting": ("child", _child_setting),
    "child.present": ("child", lambda s: s.subject.child.present if s.subject.child else None),
    "event.has_children": ("event", lambda s: any(
        age_on(c.date_of_birth, s.incident.incident_at.date()) < 18 for c in s.incident.children)),
    "event.crime": ("event", lambda s: s.incident.crime_status.value == "crime"),
    "event.risk_grade": ("event", lambda s: s.incident.risk_grade.value),
    "victim.risk_grade": ("victim", lambda s: s.incident.risk_grade.value),
    "victim.incidents_12m": ("victim", _victim_incidents),
    "victim.marac_referral_12m": ("victim", _victim_referred_12m),
    **{f"{CONSENT_FACT_PREFIX}{purpose.value}": ("victim", _consent(purpose.value)) for purpose in Purpose},
    "victim.dash_yes_count": ("victim", _dash_yes_count),
    "victim.risk_level": ("victim", lambda s: s.event.level.value if isinstance(s.event, RiskAssessmentCompleted)
                          else None),
    "case.marac_referral_12m": ("victim", _victim_referred_12m_any),
    "case.criterion": ("event", lambda s: s.event.criterion.value if isinstance(s.event, MaracReferralSubmitted)
                       else None),
    "action.owner_kind": ("event", _owner_kind),
}
"""Fact name -> (the subject kind it belongs to, how it is computed)."""

INCIDENT_TYPES = frozenset({"police.domestic-abuse-incident", "encompass.notification"})
FACT_EVENTS: dict[str, frozenset[str]] = {
    **{name: INCIDENT_TYPES for name in FACTS},
    "victim.dash_yes_count": frozenset({"risk.assessment-completed", "marac.referral-submitted"}),
    "victim.risk_level": frozenset({"risk.assessment-completed"}),
    "case.marac_referral_12m": frozenset({"risk.assessment-completed", "marac.referral-submitted"}),
    "case.criterion": frozenset({"marac.referral-submitted"}),
    "action.owner_kind": frozenset({"marac.action-assigned", "marac.action-updated"}),
}
"""Fact name -> the event types it can be computed for (start-up refuses a rule that asks otherwise)."""


def fact(name: str, situation: Situation) -> Value:
    """The value of fact `name` for `situation`."""
    return FACTS[name][1](situation)


def _by_kind(kind: AgencyKind) -> Callable[[Situation], Agency | None]:
    return lambda s: next(iter(s.directory.of_kind(kind)), None)


def _setting(s: Situation) -> Agency | None:
    token, child = s.subject.token, s.subject.child
    urn = (s.state.enrolment(token) if token else None) or (child.school_urn if child else None)
    untrusted = ("home-educated", UNRESOLVED, MOVED_AWAY)
    return s.directory.school_by_urn(urn) if urn and urn not in untrusted else None


RECIPIENTS: dict[str, Callable[[Situation], Agency | None]] = {
    "child.setting": _setting,
    "la-ehe-officer": _by_kind(AgencyKind.CHILDRENS_SERVICES),
    "mash-education-desk": _by_kind(AgencyKind.CHILDRENS_SERVICES),
    "childrens-services": _by_kind(AgencyKind.CHILDRENS_SERVICES),
    "early-years-or-health": _by_kind(AgencyKind.HEALTH),
    "da-hub": _by_kind(AgencyKind.DA_HUB),
    "idva": _by_kind(AgencyKind.IDVA),
    "marac": _by_kind(AgencyKind.MARAC),
    "police": _by_kind(AgencyKind.POLICE),
    "action.owner": lambda s: s.directory.get(str(getattr(s.event, "owner_agency", ""))),
}
"""Recipient selector -> the directory agency it names for a situation (None: not resolvable)."""


def subjects_of(
    incident: DomesticAbuseIncident, token_of: Callable[[str, str, date | None], str]
) -> dict[str, list[Subject]]:
    """The subjects of an incident by kind: each child, the victim (if any adult is one), and the event."""
    victims = [a for a in incident.adults if a.role is AdultRole.VICTIM]
    return {
        "child": [Subject(kind="child", token=token_of(c.first_name, c.surname, c.date_of_birth), child=c)
                  for c in incident.children],
        "victim": [Subject(kind="victim", token=token_of(v.first_name, v.surname, v.date_of_birth))
                   for v in victims[:1]],
        "event": [Subject(kind="event", token=None)],
    }

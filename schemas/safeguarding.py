"""
Safeguarding referrals to children's services, adult-safeguarding concerns, and MASH decisions.

A referral to children's social care follows any incident involving children
(Children Act 1989 s.17/s.47); an adult-safeguarding concern follows the Care
Act 2014 s.42 duty; the MASH records a RAG/BRAG-rated decision and feeds it back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from safebus.schemas._base import AgencyId, AwareDatetime, Event, Line, Name, Person, Text
from safebus.schemas.police import RiskGrade

__all__ = [
    "AdultConsent",
    "AdultSafeguardingConcern",
    "ChildSafeguardingReferral",
    "MashDecision",
    "MashOutcome",
    "Rag",
]


class ChildSafeguardingReferral(Event):
    """A referral (for example a police Public Protection Notice) to children's social care."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["safeguarding.child-referral"]
    referral_reference: Name
    referring_agency: AgencyId
    children: tuple[Person, ...] = Field(min_length=1)
    circumstances: Text
    incident_reference: Line | None = None
    risk_grade: RiskGrade | None = None
    children_present: bool | None = None
    prior_incidents_12_months: int | None = Field(default=None, ge=0)


class AdultConsent(StrEnum):
    """Whether the adult consented to the concern being raised."""

    GIVEN = "given"
    REFUSED_OVERRIDDEN = "refused-overridden"
    NOT_SOUGHT_RISK = "not-sought-risk"
    LACKS_CAPACITY = "lacks-capacity"


class AdultSafeguardingConcern(Event):
    """A concern about an adult with care and support needs (Care Act 2014 s.42)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["safeguarding.adult-concern"]
    concern_reference: Name
    referring_agency: AgencyId
    adult: Person
    care_and_support_needs: bool
    concern_summary: Text
    consent: AdultConsent


class Rag(StrEnum):
    """MASH urgency rating (BRAG: blue for information only)."""

    BLUE = "blue"
    RED = "red"
    AMBER = "amber"
    GREEN = "green"


class MashOutcome(StrEnum):
    """What the MASH decided."""

    NO_FURTHER_ACTION = "no-further-action"
    EARLY_HELP = "early-help"
    SECTION_17 = "section-17"
    SECTION_47 = "section-47"
    STRATEGY_DISCUSSION = "strategy-discussion"
    REFER_OTHER_AGENCY = "refer-other-agency"


class MashDecision(Event):
    """The MASH's decision on a referral, with feedback to the referrer."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["safeguarding.mash-decision"]
    referral_reference: Name
    rating: Rag
    outcome: MashOutcome
    decided_at: AwareDatetime
    feedback_to_referrer: Text | None = None

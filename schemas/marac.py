"""
Multi-Agency Risk Assessment Conference (MARAC): referral, listing, research and actions.

Referral criteria follow SafeLives: visible high risk (14+ on DASH),
professional judgement (with a written rationale), potential escalation, and
repeat (any abuse within 12 months of the last referral).  Action statuses
record "not possible" (circumstances changed) separately from "not done".
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from safebus.schemas._base import AgencyId, Contract, Event, FreeText, Line, Name, Person, Text

__all__ = [
    "ActionStatus",
    "Contact",
    "Criterion",
    "MaracActionAssigned",
    "MaracActionUpdated",
    "MaracCaseListed",
    "MaracReferralSubmitted",
    "MaracResearchShared",
    "Victim",
]


class Criterion(StrEnum):
    """Why a case is referred to MARAC."""

    HIGH_RISK = "high-risk"
    PROFESSIONAL_JUDGEMENT = "professional-judgement"
    ESCALATION = "escalation"
    REPEAT = "repeat"


class Contact(Contract):
    """A practitioner contact."""

    name: Name
    email: Line = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{7,20}$")


class Victim(Person):
    """The victim as a MARAC referral describes them."""

    safe_to_call: bool
    safe_phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{7,20}$")


class MaracReferralSubmitted(Event):
    """A referral of a victim's case to MARAC."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["marac.referral-submitted"]
    referral_reference: Name
    referring_agency: AgencyId
    referrer: Contact
    referred_on: date
    victim: Victim
    perpetrators: tuple[Person, ...] = Field(min_length=1)
    children: tuple[Person, ...] = ()
    criterion: Criterion
    dash_yes_count: int | None = Field(default=None, ge=0, le=27)
    professional_judgement_rationale: FreeText | None = Field(default=None, min_length=20, max_length=4000)
    victim_informed: bool
    victim_consented: bool | None = Field(default=None, description="None: not sought; referral may proceed anyway")
    prior_referral_on: date | None = Field(default=None, description="For repeat referrals: the last referral date")

    @model_validator(mode="after")
    def _criterion_is_evidenced(self) -> MaracReferralSubmitted:
        if self.criterion is Criterion.HIGH_RISK and (self.dash_yes_count or 0) < 14:
            raise ValueError("a high-risk referral needs a DASH yes-count of 14 or more")
        if self.criterion is Criterion.PROFESSIONAL_JUDGEMENT and not self.professional_judgement_rationale:
            raise ValueError("a professional-judgement referral needs a written rationale")
        if self.criterion is Criterion.REPEAT and self.prior_referral_on is None:
            raise ValueError("a repeat referral needs the date of the prior referral")
        return self


class MaracCaseListed(Event):
    """A referred case is listed for a MARAC meeting; invited agencies research their records."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["marac.case-listed"]
    case_reference: Name
    referral_reference: Name
    meeting_date: date
    agencies_invited: tuple[AgencyId, ...] = Field(min_length=1)


class MaracResearchShared(Event):
    """One agency's relevant, proportionate information about current risk."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["marac.research-shared"]
    case_reference: Name
    agency: AgencyId
    summary: Text
    shared_on: date


class ActionStatus(StrEnum):
    """Where a MARAC action stands."""

    OPEN = "open"
    COMPLETE = "complete"
    NOT_POSSIBLE = "not-possible"
    NOT_DONE = "not-done"


class MaracActionAssigned(Event):
    """An action from the MARAC plan, owned by one agency."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["marac.action-assigned"]
    action_id: Name
    case_reference: Name
    owner_agency: AgencyId
    description: Text
    due_date: date


class MaracActionUpdated(Event):
    """A change of status of a MARAC action."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["marac.action-updated"]
    action_id: Name
    case_reference: Name
    owner_agency: AgencyId
    status: ActionStatus
    note: Text | None = None
    updated_on: date

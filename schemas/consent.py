"""
Consent recorded and withdrawn.

Consent matters only for shares an agreement makes consent-based (for example
a voluntary-sector referral at standard or medium risk); statutory shares
proceed without it and record why.  Subjects are named by pseudonymous token.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field

from safebus.schemas._base import AgencyId, AwareDatetime, Contract, Event, Name, SubjectToken

__all__ = ["ConsentRecorded", "ConsentWithdrawn", "HowObtained", "Purpose", "RecordedBy", "Scope"]


class Purpose(StrEnum):
    """What the consent is for."""

    IDVA_SUPPORT = "idva-support"
    VOLUNTARY_SECTOR_REFERRAL = "voluntary-sector-referral"
    MARAC_INFORMATION_SHARING = "marac-information-sharing"
    HEALTH_REFERRAL = "health-referral"


class HowObtained(StrEnum):
    """How the consent (or its withdrawal) was given."""

    VERBAL = "verbal"
    WRITTEN = "written"
    ELECTRONIC = "electronic"


class Scope(Contract):
    """Which recipients the consent covers, and until when."""

    recipient_kinds: tuple[Name, ...] = Field(min_length=1)
    until: date | None = None


class RecordedBy(Contract):
    """The practitioner who recorded it."""

    agency: AgencyId
    staff_id: Name


class ConsentRecorded(Event):
    """A data subject gave (or refused) consent for a purpose."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["consent.recorded"]
    consent_id: Name
    subject: SubjectToken
    purpose: Purpose
    given: bool = Field(description="False records a refusal")
    scope: Scope
    recorded_by: RecordedBy
    how_obtained: HowObtained
    recorded_on: AwareDatetime


class ConsentWithdrawn(Event):
    """A data subject withdrew consent: later consent-based shares stop."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["consent.withdrawn"]
    consent_id: Name
    subject: SubjectToken
    purpose: Purpose
    recorded_by: RecordedBy
    how_obtained: HowObtained
    withdrawn_at: AwareDatetime

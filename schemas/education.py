"""
Education reference data: the setting directory, enrolments and elective home education.

These feed routing (which setting a child attends, who its Key Adults are, when
its school day starts) and never go to parents.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from safebus.schemas._base import URN, AgencyId, Contract, Event, Line, Name

__all__ = [
    "ChildIdentity",
    "DateRange",
    "EducationSettingRecorded",
    "ElectiveHomeEducationRecorded",
    "EnrolmentChanged",
    "EnrolmentRecorded",
    "KeyAdult",
    "KeyAdultKind",
    "LaOfficer",
    "MoveReason",
    "SessionCalendar",
    "SettingKind",
]


class SettingKind(StrEnum):
    """Kinds of education setting that Operation Encompass covers."""

    EARLY_YEARS = "early-years"
    PRIMARY = "primary"
    SECONDARY = "secondary"
    ALL_THROUGH = "all-through"
    SPECIAL = "special"
    INDEPENDENT = "independent"
    FE_COLLEGE = "fe-college"
    SIXTH_FORM_COLLEGE = "sixth-form-college"
    ALTERNATIVE_PROVISION = "alternative-provision"
    PUPIL_REFERRAL_UNIT = "pupil-referral-unit"


class KeyAdultKind(StrEnum):
    """A Key Adult is the DSL or a trained deputy."""

    DSL = "dsl"
    DEPUTY_DSL = "deputy-dsl"


class KeyAdult(Contract):
    """A setting's Key Adult for Operation Encompass."""

    staff_id: Name
    name: Name
    kind: KeyAdultKind
    email: Line = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{7,20}$")


class DateRange(Contract):
    """An inclusive range of dates."""

    first: date
    last: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.last < self.first:
            raise ValueError("last must not be before first")
        return self


class SessionCalendar(Contract):
    """When a setting is open: its term dates and INSET (training) days."""

    terms: tuple[DateRange, ...] = Field(min_length=1)
    inset_days: tuple[date, ...] = ()


class EducationSettingRecorded(Event):
    """A setting-directory entry: who to tell at a setting, and when its day starts."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["education.setting-recorded"]
    urn: URN
    name: Name
    kind: SettingKind
    local_authority: Name
    agency_id: AgencyId | None = Field(default=None, description="The setting's agency id, once onboarded")
    key_adults: tuple[KeyAdult, ...] = Field(min_length=1)
    session_start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                               description="Local (UK) time the first session starts, HH:MM")
    calendar: SessionCalendar | None = None


class ChildIdentity(Contract):
    """How education records identify a child."""

    first_name: Name
    surname: Name
    date_of_birth: date
    upn: str | None = Field(default=None, pattern=r"^[A-Z][0-9]{12}$", description="Unique pupil number")


class EnrolmentRecorded(Event):
    """A child is a registered pupil at (or attends) a setting."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["education.enrolment-recorded"]
    child: ChildIdentity
    setting_urn: URN
    from_date: date


class MoveReason(StrEnum):
    """Why an enrolment changed."""

    MOVED_SCHOOL = "moved-school"
    LEFT_AREA = "left-area"
    ELECTIVE_HOME_EDUCATION = "elective-home-education"
    PERMANENT_EXCLUSION = "permanent-exclusion"
    OTHER = "other"


class EnrolmentChanged(Event):
    """A child's setting changed: later notifications go to the new setting."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["education.enrolment-changed"]
    child: ChildIdentity
    previous_setting_urn: URN | None
    new_setting_urn: URN | None
    effective_date: date
    reason: MoveReason


class LaOfficer(Contract):
    """The local authority's elective-home-education officer."""

    name: Name
    email: Line = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ElectiveHomeEducationRecorded(Event):
    """A child is electively home educated: notifications go to the LA's officer."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["education.elective-home-education"]
    child: ChildIdentity
    from_date: date
    previous_setting_urn: URN | None = None
    la_officer: LaOfficer

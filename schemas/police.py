"""
Events published by police forces.

`DomesticAbuseIncident` is what a force's system publishes when officers attend
a domestic-abuse incident, crime or not.  It holds everything the police know;
the router decides what, if anything, each recipient may see.  Forces are moving
from DASH to DARA, so both risk tools are accepted.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field

from safebus.schemas._base import URN, AwareDatetime, Contract, Event, FreeText, Line, Name, Person, Postcode, Text

__all__ = [
    "Address",
    "Adult",
    "AdultRole",
    "Child",
    "CrimeStatus",
    "DapnIssued",
    "DapoMade",
    "DomesticAbuseIncident",
    "PoliceAction",
    "Relationship",
    "RiskGrade",
    "RiskTool",
]


class RiskGrade(StrEnum):
    """The attending officer's risk grade."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


class RiskTool(StrEnum):
    """The risk-identification tool the grade came from."""

    DASH = "dash"
    DARA = "dara"


class CrimeStatus(StrEnum):
    """Whether a crime was recorded: Operation Encompass notifies for both."""

    CRIME = "crime"
    NON_CRIME = "non-crime"


class AdultRole(StrEnum):
    """An adult's part in the incident."""

    VICTIM = "victim"
    SUSPECT = "suspect"
    OTHER = "other"


class Relationship(StrEnum):
    """An adult's relationship to the household's children."""

    PARENT = "parent"
    STEP_PARENT = "step-parent"
    PARENTS_PARTNER = "parents-partner"
    GRANDPARENT = "grandparent"
    OTHER_RELATIVE = "other-relative"
    NOT_RELATED = "not-related"


class PoliceAction(StrEnum):
    """Actions officers took."""

    ARREST = "arrest"
    DAPN_ISSUED = "dapn-issued"
    VOLUNTARY_INTERVIEW = "voluntary-interview"
    SAFEGUARDING_REFERRAL = "safeguarding-referral"
    ADVICE_GIVEN = "advice-given"
    NO_FURTHER_ACTION = "no-further-action"


class Address(Contract):
    """A postal address."""

    line1: Name
    line2: Name | None = None
    town: Name
    postcode: Postcode


class Adult(Contract):
    """An adult party to the incident."""

    first_name: Name
    surname: Name
    date_of_birth: date | None = None
    address: Address | None = None
    role: AdultRole
    relationship: Relationship


class Child(Contract):
    """A child of the household linked to the incident."""

    first_name: Name
    surname: Name
    date_of_birth: date
    address: Address | None = None
    present: bool = Field(description="Was the child present at the incident?")
    where_during_incident: Line | None = Field(default=None, max_length=500)
    spoken_to: bool = False
    voice_of_child: FreeText | None = Field(default=None, max_length=2000,
                                            description="What the child said, if spoken to")
    welfare_check_made: bool = False
    school_urn: URN | None = Field(default=None, description="The setting the child attends, as the officer recorded")
    school_name_as_recorded: Name | None = None


class DomesticAbuseIncident(Event):
    """A police-attended domestic-abuse incident, crime or non-crime."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["police.domestic-abuse-incident"]
    police_reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{4}-\d{6}$")
    incident_at: AwareDatetime
    attended_at: AwareDatetime | None = None
    location: Address | None = None
    crime_status: CrimeStatus
    offence_codes: tuple[Line, ...] = Field(default=(), description="Home Office offence codes, if a crime")
    adults: tuple[Adult, ...] = Field(min_length=1)
    children: tuple[Child, ...] = ()
    risk_grade: RiskGrade
    risk_tool: RiskTool
    narrative: FreeText = Field(max_length=20_000)
    actions: tuple[PoliceAction, ...] = ()


class DapnIssued(Event):
    """A Domestic Abuse Protection Notice issued by police (pilot areas)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["police.dapn-issued"]
    notice_reference: Name
    police_reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{4}-\d{6}$")
    issued_at: AwareDatetime
    perpetrator: Person
    victim: Person
    conditions: tuple[Text, ...] = Field(min_length=1)
    expires_at: AwareDatetime


class DapoMade(Event):
    """A Domestic Abuse Protection Order made by a court (pilot areas)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["police.dapo-made"]
    order_reference: Name
    court: Name
    made_on: date
    perpetrator: Person
    victim: Person
    requirements: tuple[Text, ...] = Field(min_length=1)
    ends_on: date | None = None
    notification_requirements: bool = False

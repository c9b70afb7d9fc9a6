"""
Events published by police forces.

`DomesticAbuseIncident` is what a force's system publishes when officers attend
a domestic-abuse incident.  It holds everything the police know; the router
decides what, if anything, each recipient may see.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_ID = "safebus:police/domestic-abuse-incident"
SCHEMA_VERSION = "1.0.0"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a UTC offset")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
URN = Annotated[str, Field(pattern=r"^\d{6}$", description="DfE unique reference number of the setting")]


class RiskGrade(StrEnum):
    """The attending officer's risk grade."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Adult(_Strict):
    """An adult party to the incident."""

    first_name: str = Field(min_length=1, max_length=100)
    surname: str = Field(min_length=1, max_length=100)
    date_of_birth: date | None = None
    role: AdultRole
    relationship: Relationship


class Child(_Strict):
    """A child of the household linked to the incident."""

    first_name: str = Field(min_length=1, max_length=100)
    surname: str = Field(min_length=1, max_length=100)
    date_of_birth: date
    present: bool = Field(description="Was the child present at the incident?")
    school_urn: URN | None = Field(default=None, description="The setting the child attends, if the officer knows it")


class DomesticAbuseIncident(_Strict):
    """A police-attended domestic-abuse incident, crime or non-crime."""

    police_reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{4}-\d{6}$")
    incident_at: AwareDatetime
    adults: tuple[Adult, ...] = Field(min_length=1)
    children: tuple[Child, ...] = ()
    narrative: str = Field(max_length=20_000)
    risk_grade: RiskGrade

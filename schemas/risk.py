"""
Risk assessments: DASH (SafeLives or police) and DARA.

On SafeLives DASH, 14 or more "yes" answers is high risk, 10-13 medium, below
that standard.  Professional judgement may raise the level, with a written
rationale, but never lower it: the model enforces both rules.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from safebus.schemas._base import AgencyId, AwareDatetime, Contract, Event, FreeText, Name, Person, Text

__all__ = ["AssessmentTool", "ProfessionalJudgement", "RiskAssessmentCompleted", "RiskLevel", "level_for"]


class AssessmentTool(StrEnum):
    """Risk-identification tools in use."""

    DASH_SAFELIVES = "dash-safelives"
    DASH_POLICE = "dash-police"
    DARA = "dara"


class RiskLevel(StrEnum):
    """The assessed risk level."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


_ORDER = {RiskLevel.STANDARD: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def level_for(yes_count: int) -> RiskLevel:
    """The level a SafeLives DASH yes-count indicates on its own."""
    if yes_count >= 14:
        return RiskLevel.HIGH
    if yes_count >= 10:
        return RiskLevel.MEDIUM
    return RiskLevel.STANDARD


class ProfessionalJudgement(Contract):
    """A practitioner's judgement that raised the level."""

    applied: bool
    rationale: FreeText = Field(min_length=20, max_length=4000)


class RiskAssessmentCompleted(Event):
    """A completed risk assessment of a victim."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["risk.assessment-completed"]
    assessment_reference: Name
    victim: Person
    tool: AssessmentTool
    yes_count: int = Field(ge=0, le=27)
    level: RiskLevel
    professional_judgement: ProfessionalJudgement | None = None
    assessing_agency: AgencyId
    assessed_at: AwareDatetime
    key_indicators: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _judgement_raises_never_lowers(self) -> RiskAssessmentCompleted:
        if self.tool is AssessmentTool.DASH_SAFELIVES:
            indicated = level_for(self.yes_count)
            if _ORDER[self.level] < _ORDER[indicated]:
                raise ValueError(f"level may not be lower than the {indicated.value} that {self.yes_count} yes "
                                 "answers indicate")
            judged = self.professional_judgement is not None and self.professional_judgement.applied
            if _ORDER[self.level] > _ORDER[indicated] and not judged:
                raise ValueError("a level above the yes-count needs professional judgement with a rationale")
        return self

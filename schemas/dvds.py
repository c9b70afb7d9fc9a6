"""
The Domestic Violence Disclosure Scheme (Clare's Law): applications and decisions.

A multi-agency forum decides; disclosure must be necessary and proportionate and
goes to the person best placed to protect the person at risk, who need not be
the applicant.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from safebus.schemas._base import Event, Name, Person, Text

__all__ = ["DvdsApplication", "DvdsDecision", "DvdsOutcome", "Route"]


class Route(StrEnum):
    """How the scheme was engaged."""

    RIGHT_TO_ASK = "right-to-ask"
    RIGHT_TO_KNOW = "right-to-know"


class DvdsApplication(Event):
    """An application under Clare's Law (right to ask) or a police-initiated case (right to know)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["dvds.application"]
    application_reference: Name
    route: Route
    applicant: Person | None = Field(default=None, description="None for right-to-know")
    person_at_risk: Person
    subject: Person = Field(description="The partner or ex-partner the application is about")
    received_on: date


class DvdsOutcome(StrEnum):
    """The forum's decision."""

    DISCLOSE = "disclose"
    NO_DISCLOSURE = "no-disclosure"


class DvdsDecision(Event):
    """The multi-agency forum's decision on an application."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["dvds.decision"]
    application_reference: Name
    outcome: DvdsOutcome
    decided_on: date
    forum: Name
    disclosed_to: Person | None = None
    rationale: Text

    @model_validator(mode="after")
    def _disclosure_has_recipient(self) -> DvdsDecision:
        if self.outcome is DvdsOutcome.DISCLOSE and self.disclosed_to is None:
            raise ValueError("a disclosure names who it is made to")
        return self

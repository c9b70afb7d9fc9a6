"""
Operation Encompass: what a school's Key Adult receives, and their acknowledgement.

The notification holds exactly the Encompass minimum data set that the
agreement allows a school (``processors/agreements/operation-encompass.json``);
`extra="forbid"` means a field added to the router by mistake fails validation
instead of reaching a school.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field

from safebus.schemas._base import URN, AwareDatetime, Contract, Event, Line, Name

__all__ = ["DELIVERY_FIELDS", "Acknowledger", "EncompassAcknowledged", "EncompassNotification", "KeyAdultRole"]

DELIVERY_FIELDS = frozenset({
    "event_id", "event_type", "schema_version", "producer", "occurred_at", "recorded_at", "correlation_id",
    "subjects", "notification_id", "setting_urn",
})
"""Fields that address or describe the message rather than the child."""


class EncompassNotification(Event):
    """One child's Operation Encompass notification to one setting."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["encompass.notification"]
    notification_id: Line = Field(description="Deterministic: the same incident and child always give the same id")
    setting_urn: URN
    child_first_name: Name
    child_surname: Name
    child_date_of_birth: date
    police_reference: Line
    incident_at: AwareDatetime
    child_present: bool


class KeyAdultRole(StrEnum):
    """Who at the setting acknowledged."""

    KEY_ADULT = "key-adult"
    DEPUTY = "deputy"


class Acknowledger(Contract):
    """The member of staff who acknowledged, by staff id (no personal detail needed)."""

    staff_id: Name
    role: KeyAdultRole


class EncompassAcknowledged(Event):
    """A Key Adult's acknowledgement that they have read a notification."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["encompass.acknowledged"]
    notification_id: Line
    setting_urn: URN
    acknowledged_by: Acknowledger
    acknowledged_at: AwareDatetime

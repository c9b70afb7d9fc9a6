"""
Operation Encompass: what a school's Key Adult receives.

The notification holds exactly the Encompass minimum data set that the
agreement allows a school (``processors/agreements/operation-encompass.json``);
`extra="forbid"` means a field added to the router by mistake fails validation
instead of reaching a school.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from safebus.schemas.police import URN, AwareDatetime

SCHEMA_ID = "safebus:encompass/notification"
SCHEMA_VERSION = "1.0.0"

DELIVERY_FIELDS = frozenset({"notification_id", "setting_urn"})
"""Fields that address the notification rather than describe the child."""


class EncompassNotification(BaseModel):
    """One child's Operation Encompass notification to one setting."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    notification_id: str = Field(description="Deterministic: the same incident and child always give the same id")
    setting_urn: URN
    child_first_name: str
    child_surname: str
    child_date_of_birth: date
    police_reference: str
    incident_at: AwareDatetime
    child_present: bool

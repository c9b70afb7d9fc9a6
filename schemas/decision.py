"""
The sharing-decision record written to the audit topic for every decision.

It names the subject only by a pseudonymous token and the released data only by
field names, so the audit trail itself never holds personal data.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from safebus.schemas.police import AwareDatetime

SCHEMA_ID = "safebus:audit/sharing-decision"
SCHEMA_VERSION = "1.0.0"


class Outcome(StrEnum):
    """What was decided for one (event, subject, candidate recipient)."""

    SHARED = "shared"
    WITHHELD = "withheld"
    DEFERRED = "deferred"
    ESCALATED = "escalated"


class SharingDecision(BaseModel):
    """One decision, shared or not, with the agreement clause and lawful basis behind it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    decision_id: str
    event_id: str
    event_type: str
    producer: str
    subject_token: str | None
    outcome: Outcome
    recipient: str | None
    recipient_kind: str
    reason: str
    agreement_id: str
    agreement_version: str
    clause: str
    lawful_basis: tuple[str, ...]
    fields_released: tuple[str, ...]
    output_id: str | None
    decided_at: AwareDatetime

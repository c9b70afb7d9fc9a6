"""
The sharing-decision record written to the audit topic for every decision.

One per (event, subject, candidate recipient), shared or not.  It names the
subject only by a pseudonymous token (in `subjects`) and the released data only
by field names, so the audit trail itself never holds personal data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from safebus.schemas._base import AgencyId, AwareDatetime, Event, Name, SubjectToken, Text

__all__ = ["ConsentStatus", "Outcome", "SharingDecision", "SubjectErased"]


class Outcome(StrEnum):
    """What was decided for one (event, subject, candidate recipient)."""

    SHARED = "shared"
    WITHHELD = "withheld"
    DEFERRED = "deferred"
    ESCALATED = "escalated"


class ConsentStatus(StrEnum):
    """Where consent stood when the decision was made."""

    NOT_REQUIRED = "not-required"
    NOT_SOUGHT = "not-sought"
    GIVEN = "given"
    REFUSED = "refused"
    REFUSED_OVERRIDDEN = "refused-overridden"
    WITHDRAWN = "withdrawn"


class SharingDecision(Event):
    """
    One decision, shared or not, with the agreement clause and lawful basis behind it.

    1.1.0 adds `incident_at`, so the deadline monitor can measure the police's
    own clock (shared before the setting's next school day after the incident),
    and `consent_purpose`, the purpose whose consent the deciding clause tested.
    """

    # 1.2.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.2.0"

    event_type: Literal["audit.sharing-decision"]
    about_event_id: str
    about_event_type: Name
    about_producer: AgencyId
    outcome: Outcome
    purpose: str
    recipient: AgencyId | None
    recipient_kind: Name
    reason: str
    agreement_id: Name
    agreement_version: Name
    clause: Name
    lawful_basis: tuple[str, ...]
    consent_status: ConsentStatus
    consent_purpose: Name | None = Field(
        default=None, description="The consent purpose the clause tested (1.1.0); consent_status is for this purpose")
    fields_released: tuple[Name, ...]
    output_id: str | None
    incident_at: AwareDatetime | None = Field(default=None, description="When the incident happened, if it says")

    @property
    def decision_id(self) -> str:
        """The decision's own id (its event id)."""
        return self.event_id

    @property
    def subject_token(self) -> str | None:
        """The subject decided about, if any."""
        return self.subjects[0] if self.subjects else None


class SubjectErased(Event):
    """A data subject's keys were destroyed: every copy of their data is now unreadable (crypto-shredding)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.subject-erased"]
    subject: SubjectToken
    key_ids_destroyed: tuple[str, ...]
    requested_by: Name
    reason: Text

"""
What a non-school recipient receives: the fields one agreement clause releases, and nothing else.

Children's services, the Domestic Abuse Hub, IDVAs and the MARAC coordinator
each get a referral whose ``released`` map holds exactly the fields named by
the clause that decided the share, with the agreement, version and clause that
justify it, so the recipient can see why it was told.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from safebus.schemas._base import AgencyId, AwareDatetime, Event, Line, Name

__all__ = ["AnyReferral", "CaseReferral", "Person", "Referral", "ReferralReceived", "ReleasedValue", "referral_model"]

Person = dict[str, str | bool | None]
ReleasedValue = str | int | bool | None | tuple[Person, ...]


class Referral(Event):
    """A minimal share to a non-school recipient under one agreement clause."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["sharing.referral"]
    referral_id: str = Field(description="Deterministic: the same decision always gives the same id")
    recipient: AgencyId
    agreement_id: Name
    agreement_version: Name
    clause: Name
    purpose: str
    police_reference: str
    incident_at: AwareDatetime
    released: dict[str, ReleasedValue]


class CaseReferral(Event):
    """
    A minimal share about a case rather than a police incident: a risk assessment, a MARAC referral or action.

    Same shape and rule as `Referral` — only the clause's fields, in
    ``released`` — but it names the event it is about and that event's own
    reference (assessment, MARAC referral or action), since there is no police
    incident behind it.
    """

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["sharing.case-referral"]
    referral_id: str = Field(description="Deterministic: the same decision always gives the same id")
    recipient: AgencyId
    agreement_id: Name
    agreement_version: Name
    clause: Name
    purpose: str
    about_event_type: Name
    reference: Name = Field(description="The assessment, MARAC referral or action reference")
    released: dict[str, ReleasedValue]


AnyReferral = Referral | CaseReferral
"""What a recipient's work queue holds."""

_REFERRAL_MODELS: dict[str, type[Referral] | type[CaseReferral]] = {
    model.type_name(): model for model in (Referral, CaseReferral)
}


def referral_model(event_type: str) -> type[Referral] | type[CaseReferral] | None:
    """The model of a work-queue event type as its envelope's signed header names it; None for any other type."""
    return _REFERRAL_MODELS.get(event_type)


class ReferralReceived(Event):
    """A recipient has taken a referral from its queue: the sender and the audit trail can see it arrived."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["sharing.referral-received"]
    referral_id: Line
    recipient: AgencyId
    received_by: Name = Field(description="Staff id of the practitioner who took it")
    received_at: AwareDatetime

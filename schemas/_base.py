"""
Building blocks shared by every data contract.

Every event on the bus carries the same metadata, flat at the top of its
payload, so a partner can validate a payload file on its own: it declares its
type and schema version.  Models are strict (`extra="forbid"`, no coercion) so
the JSON Schemas generated from them are closed (`additionalProperties: false`)
and a compatibility check can tell an added optional field from a breaking one.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from safebus.schemas.text import MULTI_LINE, SINGLE_LINE

AgencyId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="Agency id in the directory")]
SubjectToken = Annotated[
    str, Field(pattern=r"^subj_[0-9a-f]{32}$", description="Pseudonymous data-subject token (keyed HMAC)")
]
EventId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description="A UUID")
]
SemVer = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
URN = Annotated[str, Field(pattern=r"^\d{6}$", description="DfE unique reference number of an education setting")]
Name = Annotated[str, Field(min_length=1, max_length=100), SINGLE_LINE]
"""A name, reference or other short field: one line, no control or bidi character (`safebus.schemas.text`)."""
Text = Annotated[str, Field(min_length=1, max_length=4000), MULTI_LINE]
"""Free text: may hold LF, CR and TAB, never NUL, another control or a bidi character."""
Line = Annotated[str, SINGLE_LINE]
"""A one-line field whose contract gives its length with `Field` (or, in older contracts, not yet)."""
FreeText = Annotated[str, MULTI_LINE]
"""A free-text field whose contract gives its length with `Field` (a narrative, what a child said)."""
Postcode = Annotated[str, Field(pattern=r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")]

__all__ = [
    "URN", "AgencyId", "AwareDatetime", "Contract", "Event", "EventId", "FreeText", "Line", "Name", "Person",
    "Postcode", "SemVer", "SubjectToken", "Text", "event_metadata",
]


class Contract(BaseModel):
    """Base of every contract model: closed, strict and immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Event(Contract):
    """
    The metadata every event carries.

    Subclasses narrow `event_type` to a `Literal` and set `SCHEMA_VERSION`,
    the version of the contract the model implements.
    """

    SCHEMA_VERSION: ClassVar[str] = "1.0.0"

    event_id: EventId
    event_type: str
    schema_version: SemVer = Field(description="Version of the contract the payload was written to")
    producer: AgencyId = Field(description="The agency that produced (and signs) the event")
    occurred_at: AwareDatetime = Field(description="When the thing described happened")
    recorded_at: AwareDatetime = Field(description="When the producing system recorded it")
    correlation_id: EventId | None = Field(default=None, description="Event that caused this one, if any")
    subjects: tuple[SubjectToken, ...] = Field(default=(), description="Data subjects, as pseudonymous tokens")

    @classmethod
    def type_name(cls) -> str:
        """The event type this model implements (the `Literal` of `event_type`)."""
        annotation: Any = cls.model_fields["event_type"].annotation
        (value,) = annotation.__args__
        return str(value)

    @classmethod
    def schema_id(cls) -> str:
        """The contract's identifier, without version (envelopes carry the version separately)."""
        return f"urn:safebus:schema:{cls.type_name()}"


def event_metadata(
    event_type: type[Event], *, producer: str, occurred_at: datetime, recorded_at: datetime,
    event_id: str | None = None, correlation_id: str | None = None, subjects: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Return the metadata fields for a new event of `event_type` (a fresh id unless given)."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type.type_name(),
        "schema_version": event_type.SCHEMA_VERSION,
        "producer": producer,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
        "correlation_id": correlation_id,
        "subjects": subjects,
    }


class Person(Contract):
    """A named person (adult or child) as agencies record them."""

    first_name: Name
    surname: Name
    aliases: tuple[Name, ...] = ()
    date_of_birth: date | None = None

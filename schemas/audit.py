"""
Audit facts beyond sharing decisions: what the tamper-evident audit log records.

The audit log (issue 6) must answer "who received what about whom, when and
why" and also "what went wrong and who looked": so deliveries, dead letters,
changes to the agency directory and the rule set, and every view of audit data
are facts in the same log as the decisions.

Every fact here names people only by pseudonymous subject tokens (in
``subjects``) and data only by field names and SHA-256 digests, never by
content: the log is kept for years and erasing a person's data (destroying
their keys) must never require changing a leaf of it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from safebus.schemas._base import URN, AgencyId, AwareDatetime, Contract, Event, Line, Name, Text

__all__ = [
    "Acknowledged",
    "AgreementVersion",
    "AuditViewed",
    "BackfillAuthorised",
    "ConflictKind",
    "DeadLettered",
    "DeadlineSet",
    "Delivered",
    "DeliveryChannel",
    "DirectoryEntryPublished",
    "EnrolmentMoved",
    "Escalated",
    "EscalationStep",
    "FileTransferConfirmed",
    "KeyGenerationState",
    "RulesetLoaded",
    "Sha256Hex",
    "StateConflict",
]

Sha256Hex = str


class DeliveryChannel(StrEnum):
    """How a recipient was given what the router sealed for it."""

    SCHOOL_INBOX = "school-inbox"
    WORK_QUEUE = "work-queue"


class Delivered(Event):
    """A sealed share reached its recipient's store (the inbox or work queue that holds it)."""

    event_type: Literal["audit.delivered"]
    output_id: str = Field(description="The notification or referral id, as in the sharing decision")
    recipient: AgencyId
    channel: DeliveryChannel
    delivered_at: AwareDatetime


class DeadLettered(Event):
    """An input was refused and kept on the dead-letter topic; the fact holds its digest, never its bytes."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.dead-lettered"]
    reason: Name
    stage: Name
    detail: Text | None = None
    origin_topic: Name
    origin_partition: int = Field(ge=0)
    origin_offset: int = Field(ge=0)
    about_event_id: str | None = None
    content_sha256: Sha256Hex = Field(pattern=r"^[0-9a-f]{64}$")


class KeyGenerationState(Contract):
    """One key generation of an agency as the directory lists it."""

    key_id: Name
    status: Name


class DirectoryEntryPublished(Event):
    """A signed agency-directory entry was published: who is on the bus, and with which keys."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.directory-entry-published"]
    agency_id: AgencyId
    kind: Name
    entry_sha256: Sha256Hex = Field(pattern=r"^[0-9a-f]{64}$")
    signed_at: datetime | None = None
    keys: tuple[KeyGenerationState, ...] = ()


class AgreementVersion(Contract):
    """One Information Sharing Agreement file as the router loaded it."""

    agreement_id: Name
    version: Name
    sha256: Sha256Hex = Field(pattern=r"^[0-9a-f]{64}$")


class RulesetLoaded(Event):
    """The router started routing with this set of agreements (logged once per distinct set)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.ruleset-loaded"]
    ruleset_sha256: Sha256Hex = Field(pattern=r"^[0-9a-f]{64}$")
    agreements: tuple[AgreementVersion, ...]


class AuditViewed(Event):
    """Someone looked at audit data: every view of the audit trail is itself audited."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.viewed"]
    viewer: Name
    viewer_role: Name
    view: Name = Field(description="What was looked at: a page or command name")
    # Keys stay the 1.0.0 bounded string: pydantic renders a pattern on dict keys as `patternProperties`, which
    # would not refuse anything in JSON Schema; the audit web and CLI write these keys from code, never from input.
    parameters: dict[Annotated[str, Field(min_length=1, max_length=100)], str] = Field(
        default_factory=dict, description="The query, with tokens, never names")
    results: int = Field(ge=0, description="How many records were shown")


class Acknowledged(Event):
    """A Key Adult acknowledged an Operation Encompass alert (mirrors ``encompass.acknowledged``)."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.acknowledged"]
    notification_id: Line
    setting_urn: URN
    staff_id: Name
    role: Name
    acknowledged_at: AwareDatetime
    due_by: AwareDatetime | None = None


class EscalationStep(StrEnum):
    """Who was told that an alert was not acknowledged in time."""

    DEPUTIES = "deputies"
    EDUCATION_SAFEGUARDING_OFFICER = "education-safeguarding-officer"
    MASH_EDUCATION_DESK = "mash-education-desk"
    RESURFACED = "resurfaced"
    FILE_TRANSFER_PROMPTED = "file-transfer-prompted"
    FILE_TRANSFER_OVERDUE = "file-transfer-overdue"
    ELECTIVE_HOME_EDUCATION_OFFICER = "elective-home-education-officer"


class Escalated(Event):
    """
    A delivery deadline step fired: deputies alerted, the LA officer told, an alert resurfaced.

    1.1.0: a step with nobody to tell is recorded as such (`nobody_to_notify`)
    with the step taken at once instead (`moved_to`), so no escalation ends in
    silence; the elective-home-education officer is a step.
    """

    # 1.2.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.2.0"
    event_type: Literal["audit.escalated"]
    notification_id: str
    setting_urn: URN | None
    step: EscalationStep
    due_by: AwareDatetime
    notified: tuple[Name, ...] = Field(default=(), description="Staff or desk ids told, never names")
    nobody_to_notify: bool = Field(default=False, description="Nobody could be told at this step")
    moved_to: EscalationStep | None = Field(default=None, description="The step brought forward because of that")


class EnrolmentMoved(Event):
    """
    The router applied a change of a child's setting: later notifications go to the new one.

    The old setting must transfer the child-protection file, with its Operation
    Encompass history, within a few school days; this fact starts that clock.
    """

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.enrolment-moved"]
    about_event_id: str
    previous_setting_urn: URN | None
    new_setting_urn: URN | None
    effective_date: date
    reason: Name


class FileTransferConfirmed(Event):
    """The old setting's Key Adult confirmed the child-protection file was sent to the new setting."""

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.file-transfer-confirmed"]
    transfer_id: Line
    setting_urn: URN
    staff_id: Name
    confirmed_at: AwareDatetime


class DeadlineSet(Event):
    """
    The deadline monitor fixed a notification's (or a file transfer's) deadline from the setting's calendar.

    Recorded once per notification when tracking starts, so the audit log says
    by when every alert had to be read — not only for those that were
    acknowledged or escalated — and which calendar version said so.
    """

    # 1.2.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.2.0"
    event_type: Literal["audit.deadline-set"]
    notification_id: str
    setting_urn: URN | None
    desk: Name = Field(description="setting, mash (setting unknown), officer (home education) or transfer")
    due_by: AwareDatetime
    calendar_version: Name
    incident_at: AwareDatetime | None = Field(default=None, description="1.1.0: when the incident happened")
    police_due_by: AwareDatetime | None = Field(
        default=None, description="1.1.0: police deadline: next school-day start after the incident")
    shared_at: AwareDatetime | None = Field(default=None, description="1.1.0: when the router shared it")
    shared_late_minutes: int | None = Field(
        default=None, ge=0, description="1.1.0: minutes the police shared it late (0: on time; None: unknown)")


class BackfillAuthorised(Event):
    """
    An operator started the router accepting incidents older than the payload window (a backfill).

    Old incidents are refused by default (a year typed wrong must not start a
    clock); loading a backlog is a deliberate act, so who did it, why and from
    when is on the record before the first old incident is routed.
    """

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.backfill-authorised"]
    backfill_from: date
    authorised_by: Name
    reason: Text
    max_incident_age_days: float = Field(ge=0, description="The window outside the backfill")


class ConflictKind(StrEnum):
    """Which part of the router's state two changes disagreed about."""

    CONSENT = "consent"
    ENROLMENT = "enrolment"


class StateConflict(Event):
    """
    Two changes to what the router knows are for the same instant and disagree; how the router resolved it.

    Reference events are applied in a total order (docs/adr/0008); changes at
    the same ordering point that say different things cannot be ordered by
    time, so the safer one stands: a withdrawal or refusal of consent beats a
    grant, and conflicting enrolments leave the child's setting unresolved, so
    alerts go to the MASH education desk until a later record settles it.
    This fact lets a person check the source records.  Tokens, URNs and
    statuses only.
    """

    # 1.1.0: its text fields refuse control, line-break and bidi characters (safebus.schemas.text).
    SCHEMA_VERSION = "1.1.0"
    event_type: Literal["audit.state-conflict"]
    kind: ConflictKind
    purpose: Name | None = Field(default=None, description="The consent purpose, for a consent conflict")
    ordering_point: AwareDatetime = Field(description="The occurred_at the conflicting changes share")
    about_event_ids: tuple[str, ...] = Field(min_length=2, description="The conflicting changes, sorted")
    values: tuple[Name, ...] = Field(
        min_length=2, description="What each change said (a consent status, or a setting URN, home-educated, "
                                  "unknown), in the order of about_event_ids")
    resolved_to: Name = Field(description="What now stands: the safer consent status, or 'unresolved'")

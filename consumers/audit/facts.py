"""
What becomes a leaf of the audit log, and the exact bytes of that leaf.

The sequencer reads three topics and turns each record into at most one fact:

- the audit topic carries facts already (sharing decisions, erasures,
  deliveries, rule sets, views, acknowledgements, escalations): each is
  validated against its contract and taken as it is;
- the dead-letter topic carries refused input as its original bytes: the fact
  keeps only their SHA-256, the reason, stage and origin, so a forged or
  malformed event is evidenced without its content entering the log;
- the agency-directory topic carries signed entries: the fact keeps the agency,
  its key generations with their status, and the entry's digest, so key
  rotations and revocations are in the same tamper-evident log as the shares
  they govern.

A leaf is the RFC 8785 canonical JSON of the fact.  Its id is the fact's event
id; facts derived here get ids computed from what they are about, so the same
dead letter or directory entry read twice is the same fact.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

from pydantic import ValidationError

from safebus.bounded_json import JsonRefused, loads_object
from safebus.directory import SignedAgency
from safebus.errors import SafebusError
from safebus.jcs import canonical_model
from safebus.limits import MAX_RECORD_BYTES
from safebus.records import (
    DLQ_DETAIL,
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGIN_TOPIC,
    DLQ_ORIGINAL_SHA256,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TRUNCATED,
    EVENT_ID,
    Output,
    Record,
    dead_letter_id,
)
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.audit import DeadLettered, Delivered, DeliveryChannel, DirectoryEntryPublished, KeyGenerationState
from safebus.schemas.registry import Family, by_type
from safebus.schemas.text import MULTI_LINE, SINGLE_LINE, scrub

__all__ = [
    "AUDIT_PRODUCER",
    "NotAFact",
    "delivered_fact",
    "fact_from_audit_record",
    "fact_from_dead_letter",
    "fact_from_directory_record",
    "leaf_bytes",
]

AUDIT_PRODUCER = "safebus-audit"
"""The producer named on facts the sequencer derives itself."""

_FACT_NAMESPACE = uuid.UUID("6f3c1b52-8d0e-4a7c-9b1e-2f5a6c7d8e90")


class NotAFact(SafebusError, ValueError):
    """A record on a topic the sequencer reads that is not a valid fact (logged, never appended)."""


def fact_from_audit_record(record: Record) -> Event:
    """The typed fact an audit-topic record carries, validated against its contract."""
    event_type = _peek_type(record.value)
    spec = by_type(event_type) if event_type else None
    if spec is None or spec.family is not Family.AUDIT:
        raise NotAFact(f"not an audit fact type: {event_type!r}")
    try:
        return spec.model.model_validate_json(record.value)
    except ValidationError as exc:
        raise NotAFact(f"{event_type} does not match its contract: {exc.error_count()} error(s)") from exc


def _peek_type(value: bytes) -> str | None:
    try:
        parsed = loads_object(value)
    except JsonRefused:
        return None
    event_type = parsed.get("event_type")
    return event_type if isinstance(event_type, str) else None


_COORDINATE = re.compile(r"^[0-9]{1,19}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def fact_from_dead_letter(record: Record, *, observed_at: datetime) -> DeadLettered:
    """
    The fact that `record` (a dead letter) was refused: digest, reason, stage and origin, no content.

    The digest is of the refused bytes: the value itself, or, for a dead letter
    that carries only a prefix of an oversized record, the digest it states.
    Raises `NotAFact` for a dead letter whose headers are not what ours carry
    (a partition that is not a number, say): the sequencer refuses it in turn.
    """
    # Headers are whatever the writer put there: characters the contract refuses are replaced, not refused,
    # because a dead letter must be evidenced even when its own labels are hostile.
    origin_topic = scrub(record.header(DLQ_ORIGIN_TOPIC) or "unknown", SINGLE_LINE)
    partition_text = record.header(DLQ_ORIGIN_PARTITION) or "0"
    offset_text = record.header(DLQ_ORIGIN_OFFSET) or "0"
    if not (_COORDINATE.match(partition_text) and _COORDINATE.match(offset_text)):
        raise NotAFact("a dead letter's origin partition and offset must be non-negative integers")
    partition, offset = int(partition_text), int(offset_text)
    reason = scrub(record.header(DLQ_REASON) or "unknown", SINGLE_LINE)
    stage = scrub(record.header(DLQ_STAGE) or "unknown", SINGLE_LINE)
    detail = scrub(record.header(DLQ_DETAIL) or "", MULTI_LINE)
    digest = hashlib.sha256(record.value).hexdigest()
    if record.header(DLQ_TRUNCATED) is not None:
        digest = record.header(DLQ_ORIGINAL_SHA256) or ""
        if not _SHA256.match(digest):
            raise NotAFact("a truncated dead letter must state the SHA-256 of the whole record")
    fact_id = dead_letter_id(origin_topic=origin_topic, partition=partition, offset=offset, stage=stage,
                             reason=reason)
    try:
        return DeadLettered(
            **event_metadata(DeadLettered, producer=AUDIT_PRODUCER, occurred_at=observed_at,
                             recorded_at=observed_at, event_id=fact_id),
            reason=reason[:100], stage=stage[:100], detail=detail or None,
            origin_topic=origin_topic[:100], origin_partition=partition, origin_offset=offset,
            about_event_id=record.header(EVENT_ID), content_sha256=digest,
        )
    except ValidationError as exc:
        raise NotAFact(f"a dead letter's headers do not fit audit.dead-lettered: {exc.error_count()} error(s)") from exc


def fact_from_directory_record(record: Record, *, observed_at: datetime) -> DirectoryEntryPublished:
    """The fact that a signed directory entry was published, with its key generations' status."""
    if len(record.value) > MAX_RECORD_BYTES:
        raise NotAFact("larger than any directory entry may be")
    try:
        signed = SignedAgency.model_validate_json(record.value)
    except ValidationError as exc:
        raise NotAFact("not a signed directory entry") from exc
    entry = signed.entry
    digest = hashlib.sha256(record.value).hexdigest()
    try:
        keys = tuple(KeyGenerationState(key_id=g.signing_key_id, status=g.status.value) for g in entry.keys)
    except ValueError as exc:  # a public key that is not base64 (binascii.Error) or not a key
        raise NotAFact("a directory entry's key is not a valid public key") from exc
    return DirectoryEntryPublished(
        **event_metadata(DirectoryEntryPublished, producer=AUDIT_PRODUCER, occurred_at=observed_at,
                         recorded_at=observed_at, event_id=_derived_id("directory-entry", entry.id, digest)),
        agency_id=entry.id, kind=entry.kind.value, entry_sha256=digest, signed_at=entry.issued_at, keys=keys,
    )


def _derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_FACT_NAMESPACE, "\x1f".join(parts)))


def leaf_bytes(fact: Event) -> bytes:
    """The leaf: the fact's RFC 8785 canonical JSON (what the Merkle tree hashes and exports carry)."""
    return canonical_model(fact)


def delivered_fact(*, output_id: str, recipient: str, channel: DeliveryChannel, subjects: tuple[str, ...],
                   at: datetime, audit_topic: str) -> Output:
    """
    The audit record that a share reached its recipient's store.

    Its id is derived from (recipient, output id), so a redelivered share — and
    every consumer is at-least-once — is the same fact, logged once.
    """
    fact = Delivered(
        **event_metadata(Delivered, producer=AUDIT_PRODUCER, occurred_at=at, recorded_at=at,
                         event_id=_derived_id("delivered", recipient, output_id), subjects=subjects),
        output_id=output_id, recipient=recipient, channel=channel, delivered_at=at,
    )
    return Output(topic=audit_topic, key=output_id.encode(), value=canonical_model(fact),
                  headers=((EVENT_ID, fact.event_id.encode()),))

"""
Kafka records as plain values, and the dead-letter record format.

Processors return `Output` values instead of producing directly, so the routing
logic is testable without a broker and the Faust agent stays a thin loop.  A
dead letter keeps the original bytes untouched as its value when they are at
most `safebus.limits.MAX_RECORD_BYTES`; a larger record is represented by its
first `PREFIX_BYTES` with the SHA-256 and length of the whole in headers, so
a dead letter always fits the producer's maximum request (docs/adr/0003).  Why
and where it was rejected travels in headers, in the spirit of Kafka Connect's
``__connect.errors.*`` headers, every one bounded.  Its id
(``safebus.dlq.id``) is derived from the origin's topic, partition and offset
with the stage and reason, so a replay after a crash yields the same dead
letter, which readers (the audit sequencer) count once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from safebus.envelope import peek_header
from safebus.limits import (
    MAX_CODE_CHARS,
    MAX_DETAIL_CHARS,
    MAX_HEADER_BYTES,
    MAX_ORIGIN_KEY_BYTES,
    MAX_RECORD_BYTES,
    MAX_TOPIC_CHARS,
    PREFIX_BYTES,
)

__all__ = [
    "DLQ_DETAIL",
    "DLQ_ID",
    "DLQ_ORIGINAL_BYTES",
    "DLQ_ORIGINAL_SHA256",
    "DLQ_ORIGIN_KEY",
    "DLQ_ORIGIN_OFFSET",
    "DLQ_ORIGIN_PARTITION",
    "DLQ_ORIGIN_TOPIC",
    "DLQ_REASON",
    "DLQ_STAGE",
    "DLQ_TRUNCATED",
    "EVENT_ID",
    "Origin",
    "Output",
    "Record",
    "dead_letter",
    "dead_letter_id",
]

DLQ_REASON = "safebus.dlq.reason"
DLQ_STAGE = "safebus.dlq.stage"
DLQ_DETAIL = "safebus.dlq.detail"
DLQ_ORIGIN_TOPIC = "safebus.dlq.origin.topic"
DLQ_ORIGIN_PARTITION = "safebus.dlq.origin.partition"
DLQ_ORIGIN_OFFSET = "safebus.dlq.origin.offset"
DLQ_ORIGIN_KEY = "safebus.dlq.origin.key"
DLQ_ID = "safebus.dlq.id"
DLQ_ORIGINAL_SHA256 = "safebus.dlq.original.sha256"
"""SHA-256 (hex) of the whole refused value, whether or not the dead letter carries it whole."""
DLQ_ORIGINAL_BYTES = "safebus.dlq.original.bytes"
DLQ_TRUNCATED = "safebus.dlq.truncated"
"""Present (``true``) when the value is only the first `PREFIX_BYTES` of an oversized record."""
_DEAD_LETTER_NAMESPACE = uuid.UUID("6f3c1b52-8d0e-4a7c-9b1e-2f5a6c7d8e90")
"""The audit facts' namespace: a dead letter's id is the id of the fact that logs it."""
EVENT_ID = "safebus.event_id"


@dataclass(frozen=True, kw_only=True)
class Origin:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class Output:
    """A record to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Record:
    """A record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """Return header `name` decoded as UTF-8, or None."""
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value is not None else None


def dead_letter_id(*, origin_topic: str, partition: int | str, offset: int | str, stage: str, reason: str) -> str:
    """The deterministic id of the dead letter for (origin, stage, reason): a replay gives the same id."""
    parts = ("dead-letter", origin_topic, str(partition), str(offset), stage, reason)
    return str(uuid.uuid5(_DEAD_LETTER_NAMESPACE, "\x1f".join(parts)))


def dead_letter(*, raw: bytes, origin: Origin, stage: str, reason: str, detail: str, topic: str) -> Output:
    """
    Build the dead-letter record for `raw`, rejected at `stage` for `reason`.

    The key is the origin coordinates, so a redelivered rejection is
    recognisably the same dead letter.  `detail` must not contain payload
    content: callers pass error locations and types only.  Never raises for
    any `raw` (it is not parsed beyond a bounded peek at its header), and the
    result is never larger than `safebus.limits.MAX_DEAD_LETTER_BYTES`.
    """
    raw = bytes(raw or b"")
    stage, reason = stage[:MAX_CODE_CHARS], reason[:MAX_CODE_CHARS]
    origin_topic = origin.topic[:MAX_TOPIC_CHARS]
    headers = [
        (DLQ_ID, dead_letter_id(origin_topic=origin_topic, partition=origin.partition, offset=origin.offset,
                                stage=stage, reason=reason).encode()),
        (DLQ_REASON, reason.encode("utf-8", "replace")),
        (DLQ_STAGE, stage.encode("utf-8", "replace")),
        (DLQ_DETAIL, detail[:MAX_DETAIL_CHARS].encode("utf-8", "replace")),
        (DLQ_ORIGIN_TOPIC, origin_topic.encode("utf-8", "replace")),
        (DLQ_ORIGIN_PARTITION, str(origin.partition).encode()),
        (DLQ_ORIGIN_OFFSET, str(origin.offset).encode()),
        (DLQ_ORIGINAL_SHA256, hashlib.sha256(raw).hexdigest().encode()),
        (DLQ_ORIGINAL_BYTES, str(len(raw)).encode()),
    ]
    if origin.key is not None:
        headers.append((DLQ_ORIGIN_KEY, origin.key[:MAX_ORIGIN_KEY_BYTES]))
    value = raw
    if len(raw) > MAX_RECORD_BYTES:
        value = raw[:PREFIX_BYTES]
        headers.append((DLQ_TRUNCATED, b"true"))
    else:
        header = peek_header(raw)
        if header and "event_id" in header:
            headers.append((EVENT_ID, header["event_id"][:200].encode("utf-8", "replace")[:MAX_HEADER_BYTES]))
    key = f"{origin_topic}:{origin.partition}:{origin.offset}".encode("utf-8", "replace")
    return Output(topic=topic, key=key, value=value, headers=tuple(headers))

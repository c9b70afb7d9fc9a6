"""
Kafka records as plain values, and the dead-letter record format.

Processors return `Output` values instead of producing directly, so the routing
logic is testable without a broker and the Faust agent stays a thin loop.  A
dead letter keeps the original bytes untouched as its value; why and where it
was rejected travels in headers, in the spirit of Kafka Connect's
``__connect.errors.*`` headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from safebus.envelope import peek_header

DLQ_REASON = "safebus.dlq.reason"
DLQ_STAGE = "safebus.dlq.stage"
DLQ_DETAIL = "safebus.dlq.detail"
DLQ_ORIGIN_TOPIC = "safebus.dlq.origin.topic"
DLQ_ORIGIN_PARTITION = "safebus.dlq.origin.partition"
DLQ_ORIGIN_OFFSET = "safebus.dlq.origin.offset"
DLQ_ORIGIN_KEY = "safebus.dlq.origin.key"
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


def dead_letter(*, raw: bytes, origin: Origin, stage: str, reason: str, detail: str, topic: str) -> Output:
    """
    Build the dead-letter record for `raw`, rejected at `stage` for `reason`.

    The key is the origin coordinates, so a redelivered rejection is
    recognisably the same dead letter.  `detail` must not contain payload
    content: callers pass error locations and types only.
    """
    headers = [
        (DLQ_REASON, reason.encode()),
        (DLQ_STAGE, stage.encode()),
        (DLQ_DETAIL, detail[:1000].encode()),
        (DLQ_ORIGIN_TOPIC, origin.topic.encode()),
        (DLQ_ORIGIN_PARTITION, str(origin.partition).encode()),
        (DLQ_ORIGIN_OFFSET, str(origin.offset).encode()),
    ]
    if origin.key is not None:
        headers.append((DLQ_ORIGIN_KEY, origin.key[:500]))
    header = peek_header(raw)
    if header and "event_id" in header:
        headers.append((EVENT_ID, header["event_id"][:200].encode()))
    key = f"{origin.topic}:{origin.partition}:{origin.offset}".encode()
    return Output(topic=topic, key=key, value=raw, headers=tuple(headers))

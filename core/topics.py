"""
Topics as code: every topic the bus uses, with partitions, retention and compaction.

The broker never auto-creates a topic; `safebus topics apply` creates exactly
these.  Names follow the data flow::

    <prefix>.ingress.<agency>.<event-type>   one per producing agency and event type
    <prefix>.egress.<recipient>              one per recipient agency (ACL boundary)
    <prefix>.audit.decisions                 every sharing decision, never deleted
    <prefix>.deadletter                      rejected input, original bytes kept

The prefix (default ``safebus``) lets tests and benchmarks share one broker
without seeing each other's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from safebus.directory import AgencyKind, Directory

DEFAULT_PREFIX = "safebus"
_DAY_MS = 24 * 60 * 60 * 1000


class TopicRole(StrEnum):
    """Where a topic sits in the data flow."""

    INGRESS = "ingress"
    EGRESS = "egress"
    AUDIT = "audit"
    DEADLETTER = "deadletter"


class EventType(StrEnum):
    """Event types that have an ingress topic (grows with the data contracts)."""

    DOMESTIC_ABUSE_INCIDENT = "da-incident"


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """One topic's desired state."""

    name: str
    role: TopicRole
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class TopicNames:
    """Derives topic names from a prefix, so every component spells them the same way."""

    prefix: str = DEFAULT_PREFIX

    def ingress(self, agency_id: str, event_type: EventType) -> str:
        """Ingress topic of one producing agency and event type."""
        return f"{self.prefix}.ingress.{agency_id}.{event_type.value}"

    def egress(self, recipient_id: str) -> str:
        """Egress topic of one recipient agency."""
        return f"{self.prefix}.egress.{recipient_id}"

    @property
    def audit(self) -> str:
        """The audit topic of sharing decisions."""
        return f"{self.prefix}.audit.decisions"

    @property
    def deadletter(self) -> str:
        """The dead-letter topic."""
        return f"{self.prefix}.deadletter"


def bus_topics(directory: Directory, names: TopicNames) -> list[TopicSpec]:
    """
    Return every topic the bus uses for `directory`'s agencies.

    Retention reflects purpose: ingress and egress are transport (30 days, long
    enough to replay after an outage or a late school); audit is evidence and is
    kept indefinitely; dead letters are kept 90 days for investigation.
    """
    transport = {"retention.ms": str(30 * _DAY_MS), "cleanup.policy": "delete", "min.insync.replicas": "1"}
    specs = [
        TopicSpec(
            name=names.ingress(police.id, EventType.DOMESTIC_ABUSE_INCIDENT), role=TopicRole.INGRESS, partitions=3,
            config=transport, description=f"Domestic-abuse incidents published by {police.name}",
        )
        for police in directory.of_kind(AgencyKind.POLICE)
    ]
    specs += [
        TopicSpec(
            name=names.egress(school.id), role=TopicRole.EGRESS, partitions=1, config=transport,
            description=f"Operation Encompass notifications for {school.name}",
        )
        for school in directory.of_kind(AgencyKind.SCHOOL)
    ]
    specs.append(TopicSpec(
        name=names.audit, role=TopicRole.AUDIT, partitions=3,
        config={"retention.ms": "-1", "cleanup.policy": "delete"},
        description="Every sharing decision (shared, withheld, deferred, escalated) with its lawful basis",
    ))
    specs.append(TopicSpec(
        name=names.deadletter, role=TopicRole.DEADLETTER, partitions=1,
        config={"retention.ms": str(90 * _DAY_MS), "cleanup.policy": "delete"},
        description="Rejected input with original bytes, reason, stage and origin in headers",
    ))
    return specs

"""
Topics as code: every topic the bus uses, with partitions, retention and compaction.

The broker never auto-creates a topic; `safebus topics apply` creates exactly
these, and the AsyncAPI document is generated from the same channel templates,
so the two cannot disagree.  Names follow the data flow::

    <prefix>.ingress.<agency>.<family>   one per producing agency and contract family
    <prefix>.egress.<recipient>.<family> one per recipient agency and kind of share (ACL boundary)
    <prefix>.audit.decisions             every audit fact (decisions, deliveries, views...), never deleted
    <prefix>.audit.checkpoints           signed checkpoints of the audit log (Merkle tree heads)
    <prefix>.audit.leaves                the audit log's leaves in order, to rebuild its ledger anywhere
    <prefix>.deadletter                  rejected input, original bytes kept

A template whose address contains ``{agency}`` becomes one topic per agency of
the kinds it is instantiated for.  The prefix (default ``safebus``) lets tests
and benchmarks share one broker without seeing each other's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from safebus.directory import AgencyKind, Directory
from safebus.schemas.registry import INGRESS_FAMILIES, Family, family_publishers, in_family

__all__ = [
    "DEFAULT_PREFIX",
    "INFORMATION_GOVERNANCE",
    "ROUTED_FAMILIES",
    "ChannelTemplate",
    "TopicNames",
    "TopicRole",
    "TopicSpec",
    "bus_topics",
    "channel_templates",
    "subscribed_topics",
]

DEFAULT_PREFIX = "safebus"
_DAY_MS = 24 * 60 * 60 * 1000
_TRANSPORT = {"retention.ms": str(30 * _DAY_MS), "cleanup.policy": "delete"}  # min ISR: by cluster size (apply)

ROUTED_FAMILIES = frozenset({Family.DA_INCIDENT, Family.CONSENT, Family.EDUCATION, Family.ENCOMPASS_NOTIFICATION,
                             Family.RISK, Family.MARAC, Family.ENCOMPASS_ACK})
"""Ingress families the router consumes (incidents and case events to route; consent and enrolments it must know)."""

INFORMATION_GOVERNANCE = "information-governance"
"""The audit trail's reader: not an agency on the bus but a role (issue: audit trail)."""


class TopicRole(StrEnum):
    """Where a topic sits in the data flow."""

    INGRESS = "ingress"
    EGRESS = "egress"
    AUDIT = "audit"
    DEADLETTER = "deadletter"
    REFERENCE = "reference"


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """One concrete topic's desired state."""

    name: str
    role: TopicRole
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ChannelTemplate:
    """
    A kind of topic: its address pattern, settings, messages and parties.

    `per_agency` lists the agency kinds that get their own topic (the
    ``{agency}`` parameter); empty means a single topic.
    """

    key: str
    role: TopicRole
    address: str
    partitions: int
    config: dict[str, str]
    messages: tuple[str, ...]
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    per_agency: frozenset[AgencyKind] = frozenset()
    description: str = ""

    def name_for(self, agency_id: str | None = None) -> str:
        """The concrete topic name (for `agency_id` when the template is per agency)."""
        return self.address.format(agency=agency_id) if self.per_agency else self.address


@dataclass(frozen=True, kw_only=True)
class TopicNames:
    """Derives topic names from a prefix, so every component spells them the same way."""

    prefix: str = DEFAULT_PREFIX

    def ingress(self, agency_id: str, family: Family) -> str:
        """Ingress topic of one producing agency and contract family."""
        return f"{self.prefix}.ingress.{agency_id}.{family.value}"

    def egress(self, recipient_id: str, family: Family = Family.ENCOMPASS_NOTIFICATION) -> str:
        """Egress topic of one recipient agency for one kind of share (Encompass notifications, referrals)."""
        return f"{self.prefix}.egress.{recipient_id}.{family.value}"

    @property
    def audit(self) -> str:
        """The audit topic of sharing decisions."""
        return f"{self.prefix}.audit.decisions"

    @property
    def router_state(self) -> str:
        """The compacted changelog of the router's state (enrolments, consent, histories, MARAC referrals)."""
        return f"{self.prefix}.router.state"

    @property
    def checkpoints(self) -> str:
        """The topic of the audit log's signed checkpoints."""
        return f"{self.prefix}.audit.checkpoints"

    @property
    def audit_leaves(self) -> str:
        """The audit log's leaves in index order, as the sequencer appended them (`safebus audit rebuild`)."""
        return f"{self.prefix}.audit.leaves"

    @property
    def deadletter(self) -> str:
        """The dead-letter topic."""
        return f"{self.prefix}.deadletter"

    @property
    def agencies(self) -> str:
        """The compacted topic of signed agency-directory entries."""
        return f"{self.prefix}.reference.agencies"


def _kinds(kinds: frozenset[AgencyKind]) -> tuple[str, ...]:
    return tuple(sorted(kind.value for kind in kinds))


def channel_templates(names: TopicNames) -> list[ChannelTemplate]:
    """
    Every kind of topic on the bus.

    Retention reflects purpose: ingress and egress are transport (30 days, long
    enough to replay after an outage or for a late recipient); audit is evidence
    and is kept indefinitely; dead letters are kept 90 days for investigation.
    Police incidents get three partitions (most of the volume, keyed by police
    reference); other families one.
    """
    templates = []
    for family in sorted(INGRESS_FAMILIES):
        publishers = family_publishers(family) - {AgencyKind.ROUTER}
        templates.append(ChannelTemplate(
            key=f"ingress-{family.value}", role=TopicRole.INGRESS,
            address=names.ingress("{agency}", family), partitions=3 if family is Family.DA_INCIDENT else 1,
            config=_TRANSPORT, messages=tuple(spec.event_type for spec in in_family(family)),
            publishers=_kinds(publishers),
            subscribers=(AgencyKind.ROUTER.value,) if family in ROUTED_FAMILIES else (),
            per_agency=publishers,
            description=f"{family.value} events, one topic per publishing agency"
            + ("" if family in ROUTED_FAMILIES else "; retained for the routing processors, no consumer yet"),
        ))
    templates.append(ChannelTemplate(
        key="egress-school", role=TopicRole.EGRESS, address=names.egress("{agency}", Family.ENCOMPASS_NOTIFICATION),
        partitions=1,
        config=_TRANSPORT, messages=tuple(s.event_type for s in in_family(Family.ENCOMPASS_NOTIFICATION)),
        publishers=(AgencyKind.ROUTER.value,), subscribers=(AgencyKind.SCHOOL.value,),
        per_agency=frozenset({AgencyKind.SCHOOL}),
        description="Operation Encompass notifications for one setting, encrypted for that setting",
    ))
    referral_recipients = frozenset({AgencyKind.CHILDRENS_SERVICES, AgencyKind.DA_HUB, AgencyKind.IDVA,
                                     AgencyKind.MARAC, AgencyKind.HEALTH, AgencyKind.POLICE})
    templates.append(ChannelTemplate(
        key="egress-referral", role=TopicRole.EGRESS, address=names.egress("{agency}", Family.REFERRAL), partitions=1,
        config=_TRANSPORT, messages=tuple(s.event_type for s in in_family(Family.REFERRAL)),
        publishers=(AgencyKind.ROUTER.value,), subscribers=_kinds(referral_recipients),
        per_agency=referral_recipients,
        description="Referrals under an agreement clause, each with only the fields that clause releases",
    ))
    templates.append(ChannelTemplate(
        key="audit", role=TopicRole.AUDIT, address=names.audit, partitions=3,
        config={"retention.ms": "-1", "cleanup.policy": "delete"},
        messages=tuple(s.event_type for s in in_family(Family.AUDIT)),
        publishers=(AgencyKind.ROUTER.value, AgencyKind.SERVICE.value), subscribers=(INFORMATION_GOVERNANCE,),
        description="Every sharing decision (shared, withheld, deferred, escalated) with its lawful basis; each "
                    "fact signed by the partnership component that wrote it (safebus-fact-signature/1)",
    ))
    templates.append(ChannelTemplate(
        key="router-state", role=TopicRole.REFERENCE, address=names.router_state, partitions=1,
        config={"retention.ms": "-1", "cleanup.policy": "compact"}, messages=("state-change",),
        publishers=(AgencyKind.ROUTER.value,), subscribers=(AgencyKind.ROUTER.value,),
        description="The router's state as a changelog (tokens, URNs and dates only): replayed at start-up, so a "
                    "lost disk or a new instance resumes with the same enrolments, consent and histories",
    ))
    templates.append(ChannelTemplate(
        key="audit-checkpoints", role=TopicRole.AUDIT, address=names.checkpoints, partitions=1,
        config={"retention.ms": "-1", "cleanup.policy": "delete"}, messages=("checkpoint",),
        publishers=("audit-sequencer",), subscribers=(INFORMATION_GOVERNANCE, "witness"),
        description="Signed checkpoints of the audit log (RFC 9162 tree heads), for anyone to check the log "
                    "never rewrites its history",
    ))
    templates.append(ChannelTemplate(
        key="audit-leaves", role=TopicRole.AUDIT, address=names.audit_leaves, partitions=1,
        config={"retention.ms": "-1", "cleanup.policy": "delete"}, messages=("audit-leaf",),
        publishers=("audit-sequencer",), subscribers=(INFORMATION_GOVERNANCE, "audit-sequencer"),
        description="Every leaf of the audit log in index order, with its receipt: a new host rebuilds the "
                    "ledger from it byte for byte ('safebus audit rebuild')",
    ))
    templates.append(ChannelTemplate(
        key="deadletter", role=TopicRole.DEADLETTER, address=names.deadletter, partitions=1,
        config={"retention.ms": str(90 * _DAY_MS), "cleanup.policy": "delete"}, messages=("dead-letter",),
        publishers=_kinds(referral_recipients | {AgencyKind.ROUTER, AgencyKind.SCHOOL}),
        subscribers=(INFORMATION_GOVERNANCE,),
        description="Rejected input with original bytes, reason, stage and origin in headers",
    ))
    templates.append(ChannelTemplate(
        key="reference-agencies", role=TopicRole.REFERENCE, address=names.agencies, partitions=1,
        config={"retention.ms": "-1", "cleanup.policy": "compact"}, messages=("agency-entry",),
        publishers=("partnership-administrator",), subscribers=_kinds(frozenset(AgencyKind)),
        description="The agency directory: one signed entry per agency (latest wins); readers verify each "
                    "against the partnership root key",
    ))
    return templates


def _expand(template: ChannelTemplate, directory: Directory) -> list[TopicSpec]:
    agencies: list[str | None] = [a.id for a in directory.agencies if a.kind in template.per_agency]
    return [
        TopicSpec(name=template.name_for(agency_id), role=template.role, partitions=template.partitions,
                  config=dict(template.config), description=template.description)
        for agency_id in (agencies if template.per_agency else [None])
    ]


def bus_topics(directory: Directory, names: TopicNames) -> list[TopicSpec]:
    """Every concrete topic for `directory`'s agencies."""
    return [spec for template in channel_templates(names) for spec in _expand(template, directory)]


def subscribed_topics(directory: Directory, names: TopicNames, *, party: str, role: TopicRole) -> list[str]:
    """The topics of `role` that `party` consumes, according to the channel templates."""
    return [
        spec.name
        for template in channel_templates(names) if template.role is role and party in template.subscribers
        for spec in _expand(template, directory)
    ]

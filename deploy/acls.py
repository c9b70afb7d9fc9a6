"""
Least-privilege Kafka ACLs, generated from the topic registry and the agency directory.

Why generated: an ACL list written by hand drifts from the topics the moment
an agency joins or a family is added; deriving both from the same channel
templates (`safebus.topics`) means a topic exists exactly when its readers and
writers are allowed, and nobody else is.  The cluster refuses whatever no
ACL allows (``allow.everyone.if.no.acl.found=false``), so the set below *is*
the partnership's access policy; `plan` shows how the cluster differs from
it, and `apply` corrects the drift (missing bindings created, extra ones for
the principals it manages deleted).

Two kinds of principal:

* **an agency** (``User:<agency id>``), for an agency that runs its own Kafka
  client: it may write only its own ingress topics, read only its own egress
  topics and the signed directory, and use only consumer groups named
  ``<prefix>.<agency id>.*``;
* **a component** of the partnership (`COMPONENTS`): each names the channel
  templates it reads and writes and the consumer groups it joins, nothing
  more.  Only the components that sign audit facts may write the audit topic.

Every principal may also use the reader groups (``safebus-reader*``): the
never-joined groups of readers that assign partitions themselves, which
librdkafka still looks up.  A group ACL grants nothing on any topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from safebus.directory import AgencyKind, Directory
from safebus.kafka_security import READER_GROUP_PREFIX
from safebus.topics import ChannelTemplate, TopicNames, TopicRole, channel_templates

__all__ = ["COMPONENTS", "AclPlan", "Binding", "Component", "Operation", "Pattern", "Resource", "desired_bindings",
           "managed_principals", "plan"]


class Resource(StrEnum):
    """The kinds of Kafka resource the partnership's ACLs name."""

    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class Pattern(StrEnum):
    """How a binding's name matches: exactly, or as a prefix."""

    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class Operation(StrEnum):
    """The operations granted (DESCRIBE comes with each: clients need the metadata)."""

    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"
    CREATE = "CREATE"


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW binding: `principal` may `operation` the `resource` named `name` (matched by `pattern`)."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def describe(self) -> str:
        """One line for an operator: who, what, on which resource."""
        match = "*" if self.pattern is Pattern.PREFIXED else ""
        return f"{self.principal} {self.operation.value} {self.resource.value.lower()} {self.name}{match}"


@dataclass(frozen=True)
class Component:
    """A partnership component's needs, by channel-template key; `groups` are formatted with ``prefix``."""

    principal: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    groups: tuple[str, ...] = ()
    internal_prefix: str | None = None
    """Topics the component's own library creates (Faust's), as a name prefix formatted with ``prefix``."""
    transactional_ids: tuple[str, ...] = ()
    """The transactional ids its fenced writers use (`safebus.fenced_producer`), formatted with ``prefix``."""


_COMPONENT_KINDS = frozenset({AgencyKind.ROUTER, AgencyKind.SERVICE})

_ROUTED_INGRESS = ("ingress-da-incident", "ingress-consent", "ingress-education", "ingress-encompass-notification",
                   "ingress-risk", "ingress-marac", "ingress-encompass-ack")

COMPONENTS: tuple[Component, ...] = (
    Component("router", reads=(*_ROUTED_INGRESS, "reference-agencies", "router-state"),
              writes=("egress-school", "egress-referral", "audit", "deadletter", "router-state"),
              groups=("{prefix}-router",), internal_prefix="{prefix}-router"),
    Component("inbox", reads=("egress-school", "reference-agencies"), writes=("audit", "deadletter"),
              groups=("{prefix}-school-inbox",)),
    Component("queues", reads=("egress-referral", "reference-agencies"), writes=("audit", "deadletter"),
              groups=("{prefix}-referral-queues",)),
    Component("sequencer", reads=("audit", "deadletter", "reference-agencies", "audit-leaves", "audit-checkpoints"),
              writes=("audit-checkpoints", "audit-leaves", "deadletter"),
              groups=("safebus-audit-sequencer", "{prefix}-audit-sequencer-lease"),
              transactional_ids=("{prefix}-audit-sequencer",)),
    Component("monitor", reads=("audit", "reference-agencies"), writes=("audit", "deadletter"),
              groups=("safebus-encompass-monitor", "{prefix}-encompass-monitor-lease"),
              transactional_ids=("{prefix}-encompass-monitor",)),
    Component("gateway", reads=("reference-agencies",), writes=("ingress-*", "audit", "deadletter")),
    Component("inbox-web", reads=("reference-agencies",), writes=("ingress-encompass-ack", "audit")),
    Component("audit-web", reads=("audit", "audit-checkpoints", "deadletter", "reference-agencies"),
              writes=("audit",)),
)
"""Every component's principal and needs (the gateway writes any ingress topic: it publishes for agencies)."""


def _grants(principal: str, name: str, operation: Operation, pattern: Pattern = Pattern.LITERAL,
            resource: Resource = Resource.TOPIC) -> set[Binding]:
    user = f"User:{principal}"
    granted = {Binding(user, resource, name, pattern, operation)}
    if resource is Resource.TOPIC:
        granted.add(Binding(user, resource, name, pattern, Operation.DESCRIBE))
    return granted


def _templates(keys: Iterable[str], templates: dict[str, ChannelTemplate]) -> list[ChannelTemplate]:
    chosen: list[ChannelTemplate] = []
    for key in keys:
        if key.endswith("*"):
            chosen += [t for k, t in templates.items() if k.startswith(key[:-1])]
        else:
            chosen.append(templates[key])  # KeyError: a component names a template that does not exist
    return chosen


def _topic_names(template: ChannelTemplate, directory: Directory) -> list[str]:
    if not template.per_agency:
        return [template.name_for()]
    return [template.name_for(a.id) for a in directory.agencies if a.kind in template.per_agency]


def _agency_bindings(directory: Directory, names: TopicNames, templates: list[ChannelTemplate]) -> set[Binding]:
    bindings: set[Binding] = set()
    for agency in directory.agencies:
        if agency.kind in _COMPONENT_KINDS:  # their directory ids sign; their Kafka identities are COMPONENTS
            continue
        kind = agency.kind.value
        for template in templates:
            if template.per_agency and agency.kind in template.per_agency:
                own = template.name_for(agency.id)
                if kind in template.publishers and template.role is TopicRole.INGRESS:
                    bindings |= _grants(agency.id, own, Operation.WRITE)
                if kind in template.subscribers and template.role is TopicRole.EGRESS:
                    bindings |= _grants(agency.id, own, Operation.READ)
            elif template.role is TopicRole.REFERENCE and not template.per_agency and kind in template.subscribers:
                bindings |= _grants(agency.id, template.name_for(), Operation.READ)
        bindings |= _grants(agency.id, f"{names.prefix}.{agency.id}.", Operation.READ, Pattern.PREFIXED,
                            Resource.GROUP)
    return bindings


def _reader_groups(directory: Directory) -> set[Binding]:
    """Every managed principal may name a never-joined reader group (`safebus.kafka_security.READER_GROUP_PREFIX`)."""
    bindings: set[Binding] = set()
    for principal in sorted(managed_principals(directory)):
        bindings |= _grants(principal.removeprefix("User:"), READER_GROUP_PREFIX, Operation.READ, Pattern.PREFIXED,
                            Resource.GROUP)
    return bindings


def desired_bindings(directory: Directory, names: TopicNames) -> set[Binding]:
    """Every binding the partnership in `directory` needs, and none it does not."""
    templates = channel_templates(names)
    by_key = {t.key: t for t in templates}
    bindings = _agency_bindings(directory, names, templates) | _reader_groups(directory)
    for component in COMPONENTS:
        for operation, keys in ((Operation.READ, component.reads), (Operation.WRITE, component.writes)):
            for template in _templates(keys, by_key):
                for topic in _topic_names(template, directory):
                    bindings |= _grants(component.principal, topic, operation)
        for group in component.groups:
            bindings |= _grants(component.principal, group.format(prefix=names.prefix), Operation.READ,
                                resource=Resource.GROUP)
        for transactional_id in component.transactional_ids:
            for operation in (Operation.WRITE, Operation.DESCRIBE):
                bindings |= _grants(component.principal, transactional_id.format(prefix=names.prefix), operation,
                                    resource=Resource.TRANSACTIONAL_ID)
        if component.internal_prefix is not None:
            internal = component.internal_prefix.format(prefix=names.prefix)
            for operation in (Operation.CREATE, Operation.READ, Operation.WRITE):
                bindings |= _grants(component.principal, internal, operation, Pattern.PREFIXED)
    return bindings


@dataclass(frozen=True)
class AclPlan:
    """How the cluster differs from the desired bindings."""

    create: tuple[Binding, ...]
    delete: tuple[Binding, ...]

    @property
    def in_step(self) -> bool:
        """True when the cluster already holds exactly the desired bindings."""
        return not self.create and not self.delete

    def lines(self) -> list[str]:
        """The diff for an operator: ``+`` to grant, ``-`` to revoke."""
        return [f"+ {b.describe()}" for b in self.create] + [f"- {b.describe()}" for b in self.delete]


def plan(desired: set[Binding], current: set[Binding], *, managed: set[str]) -> AclPlan:
    """
    The changes that make `current` equal `desired` for the `managed` principals.

    Bindings of other principals (an operator's own, a monitoring tool's) are
    left alone: the partnership manages only the identities it generates.
    """
    ours = {b for b in current if b.principal in managed}
    return AclPlan(create=tuple(sorted(desired - current)), delete=tuple(sorted(ours - desired)))


def managed_principals(directory: Directory) -> set[str]:
    """The principals the partnership's ACLs manage: every agency and every component."""
    agencies = {f"User:{a.id}" for a in directory.agencies if a.kind not in _COMPONENT_KINDS}
    return agencies | {f"User:{c.principal}" for c in COMPONENTS}

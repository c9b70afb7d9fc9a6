"""The partnership's access policy, generated from the topic registry: each identity gets what it needs, no more."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safebus.app.wiring import Settings, build_audit_sequencer
from safebus.consumers.audit.sequencer import LEASE_GROUP, transactional_id
from safebus.consumers.encompass.escalation import LEASE_GROUP as MONITOR_LEASE_GROUP
from safebus.consumers.encompass.escalation import transactional_id as monitor_transactional_id
from safebus.deploy.acls import (
    COMPONENTS,
    Binding,
    Operation,
    Pattern,
    Resource,
    desired_bindings,
    managed_principals,
    plan,
)
from safebus.deploy.acls_admin import current_bindings
from safebus.directory import AgencyKind, Directory, PartnershipStore
from safebus.errors import BrokerError
from safebus.kafka_security import READER_GROUP_PREFIX
from safebus.producers.synthetic import create_partnership
from safebus.schemas.registry import Family
from safebus.topics import TopicNames, TopicRole, channel_templates

NAMES = TopicNames(prefix="acl")


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Directory:
    return create_partnership(PartnershipStore(tmp_path_factory.mktemp("partnership")))


def _may(bindings: set[Binding], principal: str, operation: Operation, topic: str) -> bool:
    return Binding(f"User:{principal}", Resource.TOPIC, topic, Pattern.LITERAL, operation) in bindings


def test_a_school_reads_only_its_own_egress_and_writes_no_police_ingress(directory: Directory) -> None:
    bindings = desired_bindings(directory, NAMES)
    first, second = directory.of_kind(AgencyKind.SCHOOL)[:2]
    police = directory.of_kind(AgencyKind.POLICE)[0]

    assert _may(bindings, first.id, Operation.READ, NAMES.egress(first.id))
    assert not _may(bindings, first.id, Operation.READ, NAMES.egress(second.id))
    assert _may(bindings, first.id, Operation.WRITE, NAMES.ingress(first.id, Family.ENCOMPASS_ACK))
    assert not _may(bindings, first.id, Operation.WRITE, NAMES.ingress(police.id, Family.DA_INCIDENT))
    assert not _may(bindings, first.id, Operation.READ, NAMES.audit)
    assert not _may(bindings, first.id, Operation.WRITE, NAMES.audit)


def test_every_agency_grant_names_its_own_topics_or_the_directory(directory: Directory) -> None:
    agencies = {a.id for a in directory.agencies}
    for binding in desired_bindings(directory, NAMES):
        agency = binding.principal.removeprefix("User:")
        if agency not in agencies or binding.resource is not Resource.TOPIC:
            continue
        assert f".{agency}." in binding.name or binding.name == NAMES.agencies, binding.describe()
        if binding.name == NAMES.agencies:
            assert binding.operation in {Operation.READ, Operation.DESCRIBE}


def test_only_components_that_sign_audit_facts_write_the_audit_topic(directory: Directory) -> None:
    writers = {b.principal for b in desired_bindings(directory, NAMES)
               if b.name == NAMES.audit and b.operation is Operation.WRITE}
    assert writers == {"User:router", "User:inbox", "User:queues", "User:monitor", "User:gateway", "User:inbox-web",
                       "User:audit-web"}
    checkpoint_writers = {b.principal for b in desired_bindings(directory, NAMES)
                          if b.name == NAMES.checkpoints and b.operation is Operation.WRITE}
    assert checkpoint_writers == {"User:sequencer"}


def test_the_router_reads_exactly_the_ingress_it_routes(directory: Directory) -> None:
    router = next(c for c in COMPONENTS if c.principal == "router")
    routed = {t.key for t in channel_templates(NAMES) if t.role is TopicRole.INGRESS and "router" in t.subscribers}
    assert {key for key in router.reads if key.startswith("ingress-")} == routed


def test_every_topic_has_a_writer_and_a_reader(directory: Directory) -> None:
    """A topic nobody may write or nobody may read is a flow the policy silently broke."""
    bindings = desired_bindings(directory, NAMES)
    for template in channel_templates(NAMES):
        if template.per_agency and not template.subscribers:
            continue  # retained for processors still to come: written, deliberately read by nobody yet
        topic = template.name_for(next(a.id for a in directory.agencies if a.kind in template.per_agency)
                                  if template.per_agency else None)
        operations = {b.operation for b in bindings if b.name == topic}
        if template.key != "reference-agencies":  # written by the cluster's administrator only
            assert Operation.WRITE in operations, topic
        assert Operation.READ in operations, topic


def test_drift_is_corrected_but_an_operators_own_binding_is_left_alone(directory: Directory) -> None:
    desired = desired_bindings(directory, NAMES)
    school = directory.of_kind(AgencyKind.SCHOOL)[0]
    stray = Binding(f"User:{school.id}", Resource.TOPIC, NAMES.audit, Pattern.LITERAL, Operation.READ)
    operators = Binding("User:observability", Resource.TOPIC, NAMES.audit, Pattern.LITERAL, Operation.DESCRIBE)
    missing = next(iter(sorted(desired)))

    changes = plan(desired, (desired - {missing}) | {stray, operators}, managed=managed_principals(directory))

    assert changes.create == (missing,)
    assert changes.delete == (stray,)
    assert plan(desired, desired, managed=managed_principals(directory)).in_step
    assert changes.lines()[0].startswith("+ User:")
    assert changes.lines()[1] == f"- User:{school.id} READ topic {NAMES.audit}"


def test_no_component_names_a_template_that_does_not_exist(tmp_path: Path) -> None:
    keys = {t.key for t in channel_templates(NAMES)}
    for component in COMPONENTS:
        for key in (*component.reads, *component.writes):
            assert key in keys or (key.endswith("*") and any(k.startswith(key[:-1]) for k in keys)), key


def test_an_unreachable_cluster_is_a_clear_error_not_a_traceback() -> None:
    with pytest.raises(BrokerError, match=re.escape("no answer from 127.0.0.1:1 in 2 s")):
        current_bindings("127.0.0.1:1", timeout_s=2.0)


def test_every_principal_may_name_a_reader_group_and_no_group_grant_reaches_a_topic(directory: Directory) -> None:
    """
    read_topic and the live directory assign partitions and never join, yet librdkafka looks their group up;
    without a grant on ``safebus-reader*`` a component restarting on a secured cluster could not read its state.
    """
    bindings = desired_bindings(directory, NAMES)
    reader = {b.principal for b in bindings
              if b.resource is Resource.GROUP and b.name == READER_GROUP_PREFIX and b.pattern is Pattern.PREFIXED
              and b.operation is Operation.READ}
    assert reader == managed_principals(directory)
    assert "User:router" in reader
    assert not any(b.resource is Resource.TOPIC and b.name.startswith(READER_GROUP_PREFIX) for b in bindings)


def test_the_sequencer_reads_what_it_reads_writes_its_leaves_and_each_single_writer_fences(tmp_path: Path) -> None:
    """Running as User:sequencer on a secured cluster, a topic it reads without a grant stalls the log."""
    store = PartnershipStore(tmp_path)
    directory = create_partnership(store)
    settings = Settings(state_dir=tmp_path, bootstrap="127.0.0.1:1", names=NAMES)
    sequencer = build_audit_sequencer(settings)
    try:
        bindings = desired_bindings(directory, NAMES)
        for topic in sequencer.topics:
            assert _may(bindings, "sequencer", Operation.READ, topic), topic
        assert _may(bindings, "sequencer", Operation.WRITE, NAMES.audit_leaves)
        for head in (NAMES.audit_leaves, NAMES.checkpoints):  # where each stands is read back at start
            assert _may(bindings, "sequencer", Operation.READ, head), head
        assert not _may(bindings, "inbox", Operation.WRITE, NAMES.audit_leaves)
        fence = {b for b in bindings if b.resource is Resource.TRANSACTIONAL_ID}
        assert fence == {Binding(f"User:{who}", Resource.TRANSACTIONAL_ID, tid, Pattern.LITERAL, operation)
                         for who, tid in (("sequencer", transactional_id(NAMES)),
                                          ("monitor", monitor_transactional_id(NAMES)))
                         for operation in (Operation.WRITE, Operation.DESCRIBE)}, \
            "only each single writer may write under (and so fence) its own transactional id"
        for who, group in (("sequencer", LEASE_GROUP), ("monitor", MONITOR_LEASE_GROUP)):
            assert Binding(f"User:{who}", Resource.GROUP, group.format(prefix=NAMES.prefix), Pattern.LITERAL,
                           Operation.READ) in bindings
    finally:
        sequencer.ledger.close()

"""Topics as code: every topic the bus uses is declared, with purpose-driven retention."""

from __future__ import annotations

from safebus.directory import AgencyKind
from safebus.schemas.registry import Family
from safebus.topics import TopicNames, TopicRole, bus_topics, subscribed_topics
from tests.conftest import Partnership


def test_registry_declares_ingress_egress_audit_and_deadletter(partnership: Partnership) -> None:
    """One ingress per force and event type, one egress per school, plus audit and dead letters."""
    names = TopicNames(prefix="safebus")
    specs = {s.name: s for s in bus_topics(partnership.directory, names)}
    assert names.ingress("northdale-police", Family.DA_INCIDENT) in specs
    for school in partnership.directory.of_kind(AgencyKind.SCHOOL):
        assert specs[names.egress(school.id)].role is TopicRole.EGRESS
    assert specs["safebus.audit.decisions"].config["retention.ms"] == "-1"
    assert specs["safebus.deadletter"].role is TopicRole.DEADLETTER
    assert "safebus.ingress.school-900101.encompass-ack" in specs
    assert "safebus.ingress.northdale-police.encompass-ack" not in specs, "only schools acknowledge"
    egress = {s.name for s in specs.values() if s.role is TopicRole.EGRESS}
    assert len(egress) == 6 + 6, "Encompass egress for each school, referral egress for each other agency (police too)"
    assert "safebus.egress.northdale-childrens-services.referral" in egress
    assert "safebus.egress.northdale-police.referral" in egress, "police receive the MARAC actions they own"
    assert not any(".egress.school-" in t and t.endswith(".referral") for t in egress), "schools: Encompass only"


def test_router_consumes_only_what_it_routes(partnership: Partnership) -> None:
    """The router subscribes to incidents, consent, education, risk and MARAC topics, nothing it cannot handle."""
    names = TopicNames()
    topics = set(subscribed_topics(partnership.directory, names, party="router", role=TopicRole.INGRESS))
    assert names.ingress("northdale-police", Family.DA_INCIDENT) in topics
    assert names.ingress("northdale-idva", Family.CONSENT) in topics
    assert names.ingress("school-900101", Family.EDUCATION) in topics
    assert names.ingress("northdale-idva", Family.RISK) in topics
    assert names.ingress("northdale-marac", Family.MARAC) in topics
    assert not any(t.endswith((".dvds", ".safeguarding", ".protection-order")) for t in topics)


def test_every_topic_states_partitions_and_retention(partnership: Partnership) -> None:
    """Nothing is left to broker defaults."""
    for spec in bus_topics(partnership.directory, TopicNames()):
        assert spec.partitions >= 1
        assert "retention.ms" in spec.config
        assert spec.config["cleanup.policy"] in {"delete", "compact"}


def test_prefix_isolates_namespaces(partnership: Partnership) -> None:
    """Two prefixes never share a topic name."""
    a = {s.name for s in bus_topics(partnership.directory, TopicNames(prefix="a"))}
    b = {s.name for s in bus_topics(partnership.directory, TopicNames(prefix="b"))}
    assert not a & b

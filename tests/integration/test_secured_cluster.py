"""
The secured three-node cluster as a partnership's would be: refused without the right identity, and the
flow still whole when one broker dies mid-flow (acks=all, three replicas, two in sync).

One cluster of the module's own (``safebus broker up --secure``'s `LocalCluster`, about 20 s to
start), since a node of it is killed; the rest of the integration suite runs on the session's secured
cluster too.  This process is the cluster's administrator, through the same ``SAFEBUS_KAFKA_*``
settings an operator would export; the router and the inbox run as their own principals (User:router,
User:inbox) on exactly the grants ``safebus acls apply`` generates, as ``safebus up`` runs them.
"""

from __future__ import annotations

import io
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from safebus.app import cli_acls
from safebus.deploy.acls import AclPlan, Binding, Operation, Pattern, Resource
from safebus.deploy.acls_admin import apply_plan, current_bindings
from safebus.deploy.cluster import LocalCluster
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import AgencyKind
from safebus.kafka_io import read_topic
from safebus.paths import cache_dir
from safebus.schemas.decision import SharingDecision
from safebus.schemas.police import Child
from safebus.schemas.registry import Family
from safebus.topics import TopicRole, TopicSpec
from tests.integration.conftest import Broker, Bus, administrator_of, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """
    A secured three-node cluster of this module's own (a node of it is killed); this process (and every
    worker it starts) is its administrator.
    """
    cluster = LocalCluster(state_dir=tmp_path_factory.mktemp("secure"), cache_dir=cache_dir(), nodes=3)
    status = cluster.up()
    assert status.running
    assert status.bootstrap
    try:
        with pytest.MonkeyPatch.context() as env, administrator_of(cluster):
            env.setenv("KAFKA_BOOTSTRAP_SERVERS", status.bootstrap)
            yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def secure_bus(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """The router and inbox running on the secured cluster."""
    bootstrap = cluster.status().bootstrap
    assert bootstrap
    with running_bus(Broker(bootstrap, local=True, cluster=cluster), tmp_path_factory.mktemp("bus"),
                     prefix=f"s{uuid.uuid4().hex[:10]}") as bus:
        yield bus


def _errors_of(config: dict[str, Any], *, seconds: float = 8.0) -> list[KafkaError]:
    """The client-level errors a metadata request with `config` meets."""
    errors: list[KafkaError] = []
    settings: dict[str, Any] = {**config, "log_level": 0, "error_cb": errors.append}
    admin = AdminClient(settings)
    with pytest.raises(KafkaException):  # no metadata: refused (the reason is in `errors`)
        admin.list_topics(timeout=seconds)
    admin.poll(1.0)  # the client's error callbacks are served from poll
    return errors


def test_a_client_without_tls_and_a_login_is_refused(cluster: LocalCluster) -> None:
    bootstrap = cluster.status().bootstrap
    assert bootstrap
    _errors_of({"bootstrap.servers": bootstrap})  # plaintext to a SASL_SSL listener gets no metadata at all


def test_a_wrong_password_is_refused_as_an_authentication_failure(cluster: LocalCluster) -> None:
    bootstrap = cluster.status().bootstrap
    assert bootstrap
    config = {"bootstrap.servers": bootstrap, **cluster.security().librdkafka(), "sasl.password": "not-the-password"}
    errors = _errors_of(config)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_a_principal_with_no_acl_can_neither_write_nor_read(cluster: LocalCluster, tmp_path: Path) -> None:
    """Nothing is allowed that an ACL does not allow: an authenticated newcomer is refused the topic."""
    bootstrap = cluster.status().bootstrap
    assert bootstrap
    cluster.add_user("newcomer")
    topic = f"secure-probe-{uuid.uuid4().hex[:8]}"
    apply_topics(bootstrap, [TopicSpec(name=topic, role=TopicRole.INGRESS, partitions=1)])
    outcome: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, **cluster.security("newcomer").librdkafka(),
                         "log_level": 0})
    producer.produce(topic, b"synthetic", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert outcome
    assert outcome[0] is not None
    assert outcome[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert read_topic(bootstrap, topic) == []  # and as administrator: nothing was written


def test_the_flow_runs_on_the_cluster_and_survives_a_broker_killed_mid_flow(
        cluster: LocalCluster, secure_bus: Bus) -> None:
    """
    Alerts published before and after one of the three nodes is killed all reach the school's inbox,
    each once: every write was acknowledged by two replicas, and two nodes keep both quorum and ISR.
    """
    bus = secure_bus
    topics = AdminClient({"bootstrap.servers": bus.settings.bootstrap, **cluster.security().librdkafka(),
                          "log_level": 0}).list_topics(timeout=10).topics
    ours = [t for name, t in topics.items() if name.startswith(bus.names.prefix)]
    assert ours
    assert all(len(p.replicas) == 3 for t in ours for p in t.partitions.values())

    def publish(marker: str) -> list[str]:
        incidents = [make_incident(Child(first_name=f"Synth{marker}{i}", surname="Ashdown",
                                         date_of_birth=date(2016, 3, 1 + i), present=True, school_urn="900101"))
                     for i in range(4)]
        return bus.publisher().publish(incidents)

    before = publish("a")
    wait_for(lambda: len(bus.encompass(set(before))) == 4 or None, timeout_s=90,
             what=f"the first alerts decided\n{bus.log('processor')}")
    cluster.stop_node(2, sig=signal.SIGKILL)
    after = publish("b")
    events = set(before) | set(after)

    def all_decided() -> dict[str, SharingDecision] | None:
        found = bus.encompass(events)
        return found if len(found) == 8 else None

    decisions = wait_for(all_decided, timeout_s=120, what=f"eight decisions with a node down\n{bus.log('processor')}")
    outputs = {d.output_id or "" for d in decisions.values()}
    assert "" not in outputs
    assert len(outputs) == 8
    wait_for(lambda: bus.delivered(outputs) == outputs or None, timeout_s=120,
             what=f"all eight alerts in the inbox\n{bus.log('inbox')}")
    per_event = sorted(d.about_event_id for d in decisions.values())
    assert per_event == sorted(events), "each incident decided exactly once"


def _first_error(consumer_config: dict[str, Any], topic: str, *, seconds: float = 20.0) -> KafkaError | None:
    """The first error a consumer in its own group meets reading `topic` (None: read without refusal)."""
    consumer = Consumer({**consumer_config, "auto.offset.reset": "earliest", "log_level": 0})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            error = message.error() if message is not None else None
            if error is not None:
                return None if error.code() == KafkaError._PARTITION_EOF else error
        return None
    finally:
        consumer.close()


def test_generated_acls_confine_a_school_to_its_own_topics_and_correct_drift(
        cluster: LocalCluster, secure_bus: Bus) -> None:
    """
    ``safebus acls apply`` as the administrator: a school's principal then reads its own alerts but is
    refused another school's and cannot write police ingress; a stray grant is reported and revoked.

    The bus's workers already run as their own principals on exactly the generated grants, so the
    first apply finds the cluster in step with the registry.
    """
    bus = secure_bus
    out = io.StringIO()
    assert cli_acls.acls(bus.settings, dry_run=False, out=out) == 0, out.getvalue()
    assert "in step" in out.getvalue()
    assert cli_acls.acls(bus.settings, dry_run=True, out=io.StringIO()) == 0

    directory = bus.store.load_directory()
    own, other = directory.of_kind(AgencyKind.SCHOOL)[:2]
    police = directory.of_kind(AgencyKind.POLICE)[0]
    cluster.add_user(own.id)
    school = {"bootstrap.servers": bus.settings.bootstrap, **cluster.security(own.id).librdkafka(),
              "group.id": f"{bus.names.prefix}.{own.id}.inbox", "enable.partition.eof": True}

    assert _first_error(school, bus.names.egress(own.id)) is None
    refused = _first_error(school, bus.names.egress(other.id))
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    outcome: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bus.settings.bootstrap, **cluster.security(own.id).librdkafka(),
                         "log_level": 0})
    producer.produce(bus.names.ingress(police.id, Family.DA_INCIDENT), b"synthetic",
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert outcome
    assert outcome[0] is not None
    assert outcome[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    stray = Binding(f"User:{own.id}", Resource.TOPIC, bus.names.audit, Pattern.LITERAL, Operation.READ)
    apply_plan(bus.settings.bootstrap, AclPlan(create=(stray,), delete=()))
    drifted = io.StringIO()
    assert cli_acls.acls(bus.settings, dry_run=True, out=drifted) == 1
    assert f"- {stray.describe()}" in drifted.getvalue().splitlines()
    assert cli_acls.acls(bus.settings, dry_run=False, out=io.StringIO()) == 0
    assert stray not in current_bindings(bus.settings.bootstrap)


def test_a_client_certificate_is_a_principal_with_that_principals_acls(cluster: LocalCluster) -> None:
    """
    On the mutual-TLS listener the certificate's CN is the principal: CN=admin writes, CN=stranger (signed
    by the same CA, no ACL) is refused, and a client without a certificate never gets metadata.
    """
    topic = f"mtls-probe-{uuid.uuid4().hex[:8]}"
    apply_topics(cluster.status().bootstrap or "", [TopicSpec(name=topic, role=TopicRole.INGRESS, partitions=1)])

    def write_as(user: str) -> KafkaError | None:
        outcome: list[KafkaError | None] = []
        producer = Producer({"bootstrap.servers": cluster.mtls_bootstrap, "log_level": 0,
                             **cluster.certificate_security(user).librdkafka()})
        producer.produce(topic, b"synthetic", on_delivery=lambda err, _msg: outcome.append(err))
        producer.flush(20)
        assert outcome, f"no delivery report for {user}"
        return outcome[0]

    assert write_as("admin") is None
    refused = write_as("stranger")
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    _errors_of({"bootstrap.servers": cluster.mtls_bootstrap, "security.protocol": "SSL",
                "ssl.ca.location": str(cluster.ca_file)})  # TLS but no certificate: no metadata at all

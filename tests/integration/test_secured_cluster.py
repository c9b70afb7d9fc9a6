"""
The secured three-node cluster as a partnership's would be: refused without the right identity, and the
flow still whole when one broker dies mid-flow (acks=all, three replicas, two in sync).

One cluster for the module (``safebus broker up --secure``'s `LocalCluster`, about 20 s to start);
this process and the workers it starts talk to it as the cluster's administrator through the same
``SAFEBUS_KAFKA_*`` settings an operator would export.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from safebus import kafka_security
from safebus.deploy.cluster import LocalCluster
from safebus.deploy.topics_admin import apply_topics
from safebus.kafka_io import read_topic
from safebus.paths import cache_dir
from safebus.schemas.decision import SharingDecision
from safebus.schemas.police import Child
from safebus.topics import TopicRole, TopicSpec
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A secured three-node cluster; this process (and every worker it starts) is its administrator."""
    cluster = LocalCluster(state_dir=tmp_path_factory.mktemp("secure"), cache_dir=cache_dir(), nodes=3)
    status = cluster.up()
    assert status.running
    assert status.bootstrap
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", status.bootstrap)
        for name, value in cluster.environment("admin").items():
            env.setenv(name, value)
        kafka_security.use(None)  # read the administrator's settings at the next client
        try:
            yield cluster
        finally:
            kafka_security.use(None)
            cluster.down()
    kafka_security.use(None)


@pytest.fixture(scope="module")
def secure_bus(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """The router and inbox running on the secured cluster."""
    bootstrap = cluster.status().bootstrap
    assert bootstrap
    with running_bus(Broker(bootstrap, local=True), tmp_path_factory.mktemp("bus"),
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

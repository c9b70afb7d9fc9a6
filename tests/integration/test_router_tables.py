"""
The router's partitioning on the real broker: every Kafka client places a subject's task where the router reads it.

ADR 0018 has the router's stages and tables agree on one partitioning
function; a librdkafka producer (the confluent-kafka workers and tools) must
place a key on the partition `router_partition` names.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from safebus.kafka_security import client_config
from safebus.processors.router_tables import ROUTER_PARTITIONS, router_partition
from tests.integration.conftest import Broker

VICTIMS = [f"subj_{n:032x}" for n in range(24)]


def test_librdkafka_murmur2_places_keys_where_router_partition_says(kafka: Broker) -> None:
    """Every writer of the router's topics agrees with `router_partition`, whichever Kafka client it uses."""
    prefix = f"rt{uuid.uuid4().hex[:8]}"
    replication = 1 if kafka.cluster is None else 3
    admin = AdminClient(client_config(kafka.bootstrap))  # kept: its futures fail once the client is collected
    for future in admin.create_topics([NewTopic(f"{prefix}-router-probe", ROUTER_PARTITIONS, replication)]).values():
        future.result(30)
    placed: dict[str, int] = {}

    def delivered(err: object, message: object) -> None:
        assert err is None
        placed[message.key().decode()] = message.partition()  # type: ignore[attr-defined]

    producer = Producer(client_config(kafka.bootstrap, partitioner="murmur2_random"))
    for victim in VICTIMS:
        producer.produce(f"{prefix}-router-probe", key=victim.encode(), value=b"{}", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert placed == {victim: router_partition(victim) for victim in VICTIMS}
    assert len(set(placed.values())) == ROUTER_PARTITIONS, "the subjects spread over every partition"

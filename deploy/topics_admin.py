"""
Apply the topic registry to a broker: create what is missing, correct what drifted.

Safe to re-run: an existing topic has its configuration set to the desired
values and its partitions raised if there are too few.  Kafka cannot lower a
partition count; that is reported, not hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from safebus.errors import BrokerError
from safebus.topics import TopicSpec

__all__ = ["TopicChange", "apply_topics"]


@dataclass(frozen=True, kw_only=True)
class TopicChange:
    """What `apply_topics` did to one topic."""

    name: str
    action: str  # created | updated | unchanged | partitions-raised | partitions-too-many


def apply_topics(bootstrap: str, specs: list[TopicSpec], *, timeout_s: float = 30.0) -> list[TopicChange]:
    """Make the broker's topics match `specs`; raises BrokerError if the broker refuses."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    changes: list[TopicChange] = []
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=dict(s.config))
             for s in missing],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent apply won
                    raise BrokerError(f"creating {name}: {exc}") from exc
            changes.append(TopicChange(name=name, action="created"))
    for spec in specs:
        if spec.name not in existing:
            continue
        changes.append(TopicChange(name=spec.name, action=_reconcile(admin, spec, len(existing[spec.name].partitions),
                                                                    timeout_s)))
    _await_leaders(admin, [s.name for s in specs], timeout_s)
    return changes


def _await_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of `names` has a leader: a new topic is not usable before."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        leaderless = [n for n in names if n not in topics or any(p.leader < 0 for p in topics[n].partitions.values())]
        if not leaderless:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics without a partition leader after {timeout_s:.0f}s: {leaderless[:5]}")
        time.sleep(0.2)


def _reconcile(admin: AdminClient, spec: TopicSpec, current_partitions: int, timeout_s: float) -> str:
    action = "unchanged"
    if current_partitions < spec.partitions:
        admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name].result(timeout_s)
        action = "partitions-raised"
    elif current_partitions > spec.partitions:
        action = "partitions-too-many"
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    described = admin.describe_configs([resource])[resource].result(timeout_s)
    drift = {k: v for k, v in spec.config.items() if k not in described or described[k].value != v}
    if drift:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
        admin.incremental_alter_configs([resource])[resource].result(timeout_s)
        action = "updated" if action == "unchanged" else action
    return action

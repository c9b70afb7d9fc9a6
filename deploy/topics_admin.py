"""
Apply the topic registry to a broker: create what is missing, correct what drifted.

Safe to re-run: an existing topic has its configuration set to the desired
values and its partitions raised if there are too few.  Kafka cannot lower a
partition count; that is reported, not hidden.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from safebus.errors import BrokerError, ConfigError
from safebus.kafka_security import client_config
from safebus.topics import TopicSpec

__all__ = ["MIN_INSYNC_REPLICAS", "REPLICATION_FACTOR", "Replication", "TopicChange", "apply_topics"]


@dataclass(frozen=True, kw_only=True)
class TopicChange:
    """What `apply_topics` did to one topic."""

    name: str
    action: str  # created | updated | unchanged | partitions-raised | partitions-too-many


@dataclass(frozen=True, kw_only=True)
class Replication:
    """How many copies of each partition the cluster keeps, and how many must have a write before it counts."""

    factor: int
    min_insync: int

    @classmethod
    def for_cluster(cls, brokers: int) -> Replication:
        """Three copies and two in sync wherever there are three brokers; one and one on a single node."""
        factor = min(3, max(brokers, 1))
        return cls(factor=factor, min_insync=2 if factor >= 3 else 1)

    @classmethod
    def configured(cls, env: Mapping[str, str] | None = None) -> Replication | None:
        """
        The operator's choice (`REPLICATION_FACTOR`, `MIN_INSYNC_REPLICAS`), or None to follow the cluster's size.

        A managed cluster of five brokers may want more copies than three; one whose policy is two
        replicas must say so.  `ConfigError` names the variable of a value that is not a positive whole
        number, or a minimum in sync above the factor.
        """
        variables = os.environ if env is None else env
        factor = _positive(variables, REPLICATION_FACTOR)
        min_insync = _positive(variables, MIN_INSYNC_REPLICAS)
        if factor is None:
            if min_insync is not None:
                raise ConfigError(f"{MIN_INSYNC_REPLICAS} needs {REPLICATION_FACTOR} beside it")
            return None
        chosen = cls(factor=factor, min_insync=min_insync if min_insync is not None else (2 if factor >= 3 else 1))
        if chosen.min_insync > chosen.factor:
            raise ConfigError(f"{MIN_INSYNC_REPLICAS}={chosen.min_insync} is more than {REPLICATION_FACTOR}="
                              f"{chosen.factor}: no write could ever be acknowledged")
        return chosen


REPLICATION_FACTOR = "SAFEBUS_REPLICATION_FACTOR"
"""Copies of every partition (default: 3 on a cluster of three or more brokers, else one per broker)."""
MIN_INSYNC_REPLICAS = "SAFEBUS_MIN_INSYNC_REPLICAS"
"""Copies a write needs before it counts, with acks=all (default: 2 where there are 3 copies, else 1)."""


def _positive(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text!r}: expected a whole number of replicas, 1 or more")
    return int(text)


def apply_topics(bootstrap: str, specs: list[TopicSpec], *, timeout_s: float = 30.0,
                 replication: Replication | None = None) -> list[TopicChange]:
    """
    Make the broker's topics match `specs`; raises BrokerError if the broker refuses.

    `replication` defaults to the operator's setting (`Replication.configured`), else to what the
    cluster's size allows (`Replication.for_cluster`): with acks=all
    and two replicas in sync, a write the producer saw acknowledged survives the loss of any one broker.
    """
    admin = AdminClient(client_config(bootstrap))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    existing = metadata.topics
    replication = replication or Replication.configured() or Replication.for_cluster(len(metadata.brokers))
    if replication.min_insync > replication.factor or replication.factor > max(len(metadata.brokers), 1):
        raise BrokerError(f"replication factor {replication.factor} with {replication.min_insync} in sync "
                          f"is impossible on {len(metadata.brokers)} broker(s)")
    specs = [replace(s, config={**s.config, "min.insync.replicas": str(replication.min_insync)}) for s in specs]
    changes: list[TopicChange] = []
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication.factor,
                      config=dict(s.config))
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

"""
The one partitioning function every writer of the router's internal topics and tables uses.

ADR 0018: each subject's state lives in a Faust table with `ROUTER_PARTITIONS`
partitions, co-partitioned with the routing tasks about that subject, so
every writer must place a key where its reader looks.  A task's partition is ``murmur2(key) mod P``
(`router_partition`), Kafka's own default partitioner (aiokafka's
`murmur2`, the Java client's and librdkafka's ``murmur2_random``), passed
explicitly wherever a record is produced: librdkafka's own default
(``consistent_random``, CRC32) would put the same key on another partition
than the stage reading it expects.

The tables and stages that use it land in later increments of issue 15
(ADR 0018); tests/integration/test_router_tables.py holds every Kafka client
to it.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

__all__ = ["ROUTER_PARTITIONS", "router_partition"]

ROUTER_PARTITIONS = 6
"""Partitions of the routing tasks and the tables (divides evenly over 1, 2, 3 and 6 deciding workers)."""


def router_partition(key: bytes | str, partitions: int = ROUTER_PARTITIONS) -> int:
    """The partition of a routing task or table key: Kafka's default (murmur2, sign bit cleared) mod `partitions`."""
    data = key.encode() if isinstance(key, str) else key
    return int(murmur2(data) & 0x7FFFFFFF) % partitions

"""
The router's ``--health-port`` answers: liveness from Faust's event loop, readiness and lag from its offsets.

The other workers have a loop of their own to report from; the router's loop is
Faust's, so its health is read from the outside of the agent, never by Faust's
own web server (which stays off):

- **Liveness** (`beat_forever`): a task on the worker's event loop, the loop
  that runs the agent, beats every `BEAT_S`.  The worker starts it before the
  app, so a router still waiting for a broker at start-up is live (an outage is
  no reason to restart), while a batch that blocks the loop stops the beats and
  ``/healthz`` turns 503 after `safebus.health.WorkerHealth.stall_after_s`.
- **Readiness** (`RouterProgress`, checked every `CHECK_S` by an app timer):
  this process holds at least one partition of its input topics (Faust's
  assignment), and on *every* partition it holds, the router's consumer group
  has committed an offset at or past that partition's end offset as it stood
  when this process first saw the partition assigned.  Faust commits an offset
  only after `safebus.processors.app.route_batch` returned for it, and that
  returns only once every output is durable, so ready means: every record that
  was on this router's partitions when it started has been routed and its
  outputs confirmed by the broker.  The committed offsets are the broker's (the
  admin API's view of the group, `GroupOffsets`), not Faust's private
  bookkeeping.  A partition with no committed offset yet counts from its
  earliest offset (empty, or emptied by retention: nothing to catch up on).
  Once ready, readiness then follows liveness (`WorkerHealth`'s rule).
- **Lag** (``safebus_consumer_lag`` per topic): end offset now minus committed
  offset, summed over the partitions this process holds.  Records fetched but
  not yet routed count as lag, which is what an operator wants to alert on.

The offsets are read with a confluent-kafka admin client in a thread of the
loop's default executor (bounded by `CHECK_TIMEOUT_S`), so a broker that does
not answer delays only the next check, never the beat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from safebus.health import WorkerHealth
from safebus.kafka_security import client_config
from safebus.logs import get_logger
from safebus.metrics import CONSUMER_LAG

__all__ = [
    "BEAT_S",
    "CHECK_S",
    "CHECK_TIMEOUT_S",
    "GroupOffsets",
    "OffsetReader",
    "Offsets",
    "Partition",
    "RouterProgress",
    "beat_forever",
    "check_progress",
]

_log = get_logger("processor.health")

BEAT_S = 2.0
"""How often the event loop beats: a small fraction of the 60 s after which a silent loop is declared stalled."""
CHECK_S = 5.0
"""How often readiness and lag are read from the broker (three small admin requests; the delivery workers' 5 s)."""
CHECK_TIMEOUT_S = 10.0
"""Longest one check may take before it is abandoned (and tried again at the next)."""

Partition = tuple[str, int]
"""(topic, partition)."""


class Offsets(Protocol):
    """What one check learns from the broker about the partitions this router holds."""

    @property
    def end(self) -> Mapping[Partition, int]:
        """The next offset to be written, per partition."""
        ...

    @property
    def position(self) -> Mapping[Partition, int]:
        """The router group's committed offset per partition (the earliest offset where none is committed)."""
        ...


class _Read:
    """`Offsets` as read."""

    def __init__(self, end: Mapping[Partition, int], position: Mapping[Partition, int]) -> None:
        self.end = end
        self.position = position


class OffsetReader(Protocol):
    """Reads end and committed offsets of `partitions` (blocking; run in an executor)."""

    def read(self, partitions: Sequence[Partition]) -> Offsets:
        """The offsets of `partitions`; raises KafkaException if the broker does not answer."""
        ...


class GroupOffsets:
    """`OffsetReader` over the broker's admin API: end offsets, and the consumer group's committed offsets."""

    def __init__(self, bootstrap: str, group: str, *, timeout_s: float = CHECK_TIMEOUT_S / 2) -> None:
        """`group` is the router's consumer group (Faust's app id); the client is this process's principal."""
        self.group = group
        self.timeout_s = timeout_s
        self._admin = AdminClient(client_config(bootstrap, log_level=0))

    def read(self, partitions: Sequence[Partition]) -> Offsets:
        """Ask the broker: ListOffsets for the ends, OffsetFetch for the group, the earliest where none is committed."""
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        committed_future = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(self.group, tps)], request_timeout=self.timeout_s)[self.group]
        end = self._offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]  # confluent-kafka: untyped
        committed = {(tp.topic, tp.partition): tp.offset for tp in committed_future.result().topic_partitions or []
                     if tp.error is None and tp.offset >= 0}
        missing = [tp for tp in tps if (tp.topic, tp.partition) not in committed]
        earliest = self._offsets(missing, OffsetSpec.earliest()) if missing else {}  # type: ignore[no-untyped-call]
        return _Read(end, {**earliest, **committed})

    def _offsets(self, tps: Sequence[TopicPartition], spec: OffsetSpec) -> dict[Partition, int]:
        futures = self._admin.list_offsets({tp: spec for tp in tps}, request_timeout=self.timeout_s)
        return {(tp.topic, tp.partition): int(future.result().offset) for tp, future in futures.items()}


class RouterProgress:
    """
    Whether the router has caught up with what its partitions held when it first held them (pure bookkeeping).

    `observe` takes each check's assignment and offsets; the first end offset
    seen for a partition is its target.  A partition taken away and given back
    keeps its first target: what was there at start-up is what readiness waits for.
    """

    def __init__(self) -> None:
        self.targets: dict[Partition, int] = {}

    def observe(self, assigned: Iterable[Partition], offsets: Offsets) -> tuple[bool, dict[str, int]]:
        """(caught up on every partition held, and at least one is held; lag per topic of the partitions held)."""
        held = sorted(set(assigned))
        lag: dict[str, int] = {}
        caught_up = bool(held)
        for partition in held:
            end = offsets.end.get(partition)
            position = offsets.position.get(partition)
            if end is None or position is None:
                caught_up = False  # not answered for: not known to be caught up
                continue
            target = self.targets.setdefault(partition, end)
            caught_up = caught_up and position >= target
            lag[partition[0]] = lag.get(partition[0], 0) + max(end - position, 0)
        return caught_up, lag


async def beat_forever(health: WorkerHealth, *, every_s: float = BEAT_S) -> None:
    """Beat `health` every `every_s` for as long as the event loop runs this task (it comes round)."""
    while True:
        health.beat()
        await asyncio.sleep(every_s)


async def check_progress(health: WorkerHealth, progress: RouterProgress, reader: OffsetReader,
                         assigned: Iterable[Partition], *, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    """
    One check: read the offsets of the `assigned` partitions, report lag, mark `health` ready once caught up.

    Returns whether the router is caught up.  A broker that does not answer in
    `timeout_s`, or any other failure to read, is logged and leaves everything
    as it was: an exception out of a Faust timer would crash the app, and a
    health check must never be what stops the router.
    """
    held = sorted(set(assigned))
    if not held:
        return False
    loop = asyncio.get_running_loop()
    try:
        offsets = await asyncio.wait_for(loop.run_in_executor(None, reader.read, held), timeout_s)
    except Exception as exc:  # noqa: BLE001 - a failed check must never stop the router (Faust would crash the app)
        _log.warning("router_offsets_unavailable", partitions=len(held), error=type(exc).__name__,
                     detail=str(exc)[:200])
        return False
    caught_up, lag = progress.observe(held, offsets)
    for topic, behind in lag.items():
        CONSUMER_LAG.labels(topic=topic).set(behind)
    if caught_up:
        health.mark_ready()
    return caught_up

"""
Which of several identical workers is the active one: a lease that is the only partition of a one-partition topic.

Why a consumer group: the broker's group coordinator already is a replicated
failure detector that hands each partition to exactly one live member.  Every
candidate (the audit sequencer and its hot standby, say) joins the same
group on a topic of one partition; the member that holds that partition
holds the lease.  A member that stops heartbeating (killed, frozen, cut off)
is dropped after ``session.timeout.ms`` (`safebus.kafka_io.GROUP_TIMING`,
8 s) and the partition, with the lease, goes to another; nothing of ours
decides, so two processes cannot both be told they hold it.

The lease consumer never reads its partition (it is paused on assignment):
the topic is only the thing held, so any one-partition topic the worker may
read serves; one that is seldom written is best.  The assignment is sticky,
so a standby that joins never takes the lease from a live holder.  It runs
on its own thread, so a worker busy with a long batch keeps heartbeating and
keeps its lease.

A lease is not a fence.  A frozen holder wakes up believing it still holds
the lease until its next heartbeat says otherwise, and may try to write in
between; those writes are refused by the broker because the new holder's
transactional producer has fenced the old one (`safebus.fenced_producer`).
The lease says who should write; the fence makes sure nobody else can.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from safebus.kafka_io import GROUP_TIMING, RECONNECT
from safebus.kafka_security import client_config
from safebus.logs import get_logger

__all__ = ["Lease", "WhileHeld"]

_log = get_logger("lease")

_POLL_S = 0.5


class Lease:
    """Membership of `group` on the one-partition `topic`; held while this member is assigned that partition."""

    def __init__(self, bootstrap: str, *, group: str, topic: str,
                 on_lost: Callable[[], object] | None = None) -> None:
        """`on_lost` is called (on the lease's thread) whenever a held lease is taken away."""
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.on_lost = on_lost
        self._held = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Lease:
        """Join the group (on a thread of its own) and return self; the lease is held once assigned."""
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.group}", daemon=True)
        self._thread.start()
        return self

    def held(self) -> bool:
        """Whether this member holds the lease now."""
        return self._held.is_set()

    def wait_held(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the lease; whether it is held."""
        return self._held.wait(timeout_s)

    def while_held(self, stop: threading.Event) -> WhileHeld:
        """A stop signal for the holder's work: set once `stop` is, or the lease has gone."""
        return WhileHeld(stop, self)

    def close(self) -> None:
        """Leave the group (the lease, if held, passes at once to another member) and stop the thread."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        consumer = Consumer(client_config(self.bootstrap, **{
            "group.id": self.group, "enable.auto.commit": False, "auto.offset.reset": "latest",
            # sticky: a standby joining (or rejoining after a restart) never takes the lease from a live holder
            "partition.assignment.strategy": "cooperative-sticky",
            **RECONNECT, **GROUP_TIMING}))
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        try:
            while not self._closing.is_set():
                try:
                    consumer.poll(_POLL_S)  # serves heartbeats' outcomes and rebalances; nothing is read
                except KafkaException as exc:  # an outage: the group decides what it means for the lease
                    _log.warning("lease_poll_failed", group=self.group, error=str(exc)[:200])
                    self._closing.wait(_POLL_S)
        finally:
            self._release()
            consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)  # held, never read
        self._held.set()
        _log.info("lease_acquired", group=self.group)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._release()

    def _release(self) -> None:
        if self._held.is_set():
            self._held.clear()
            _log.warning("lease_released", group=self.group)
            if self.on_lost is not None:
                self.on_lost()


class WhileHeld:
    """Stop-like (`is_set`, `wait`): set once the worker must stop or its lease has gone, so the holder steps down."""

    def __init__(self, stop: threading.Event, lease: Lease) -> None:
        self._stop = stop
        self._lease = lease

    def is_set(self) -> bool:
        """Whether the holder must stop now."""
        return self._stop.is_set() or not self._lease.held()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` s for either; whether the holder must stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            self._stop.wait(left)
        return self.is_set()

"""
A standby deadline monitor's reading of the audit topic: from where it last stopped, to the end, remembered on disk.

Why its own positions: the monitor's state is a function of the audit facts
it has observed (decisions, deliveries, acknowledgements, and its own steps
read back), and observing a fact twice changes nothing.  A standby that
observes every fact as the active monitor does holds the same state, so it
can take over at once; it must never skip a fact, so it reads from where
*it* stopped (kept in a small file beside its store), never from the active
monitor's committed offsets, which may be ahead of what a standby that was
down has seen.  Taking over, it reads to the end first; the group's
committed offsets are then behind or equal, and re-reading them is harmless.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer

from safebus.errors import BrokerError
from safebus.kafka_io import read_to_end, reader_consumer
from safebus.logs import get_logger
from safebus.records import Record

__all__ = ["AuditFollower", "Positions"]

_log = get_logger("encompass.follower")


class Positions:
    """The next offset to read of each partition of one topic, kept in a JSON file (replaced atomically)."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._next: dict[int, int] = {}
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("topic") == topic:
                self._next = {int(p): int(o) for p, o in saved["next"].items()}
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError):  # unreadable: read again from the start
            _log.warning("follow_positions_unreadable", path=path.name)

    def next_offset(self, partition: int) -> int:
        """Where to read `partition` from (the beginning if never read)."""
        return self._next.get(partition, OFFSET_BEGINNING)

    def advance(self, records: list[Record]) -> None:
        """Record that `records` (of this topic) were observed, and save."""
        moved = False
        for record in records:
            if record.topic == self.topic and record.offset + 1 > self._next.get(record.partition, 0):
                self._next[record.partition] = record.offset + 1
                moved = True
        if moved:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps({"topic": self.topic, "next": self._next}), encoding="utf-8")
            os.replace(scratch, self.path)


class AuditFollower:
    """Reads every partition of the audit topic from `positions` to its end, handing over batches."""

    def __init__(self, bootstrap: str, positions: Positions, *, batch_size: int = 500) -> None:
        self.bootstrap = bootstrap
        self.positions = positions
        self.batch_size = batch_size
        self._consumer: Consumer | None = None

    def catch_up(self, observe: Callable[[list[Record]], object], *, timeout_s: float = 30.0) -> int:
        """Hand every record up to the end to `observe` (a batch at a time, saved after each); return how many."""
        consumer = self._consumer = self._consumer or reader_consumer(self.bootstrap)
        topic = self.positions.topic
        metadata = consumer.list_topics(topic, timeout=10)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise BrokerError(f"topic {topic} does not exist")
        starts = {p: self.positions.next_offset(p) for p in sorted(info.partitions)}
        seen, batch = 0, []
        for record in read_to_end(consumer, topic, starts, timeout_s=timeout_s):
            batch.append(record)
            if len(batch) >= self.batch_size:
                seen += self._hand_over(observe, batch)
                batch = []
        return seen + self._hand_over(observe, batch)

    def _hand_over(self, observe: Callable[[list[Record]], object], batch: list[Record]) -> int:
        if batch:
            observe(batch)
            self.positions.advance(batch)
        return len(batch)

    def close(self) -> None:
        """Close the reader."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

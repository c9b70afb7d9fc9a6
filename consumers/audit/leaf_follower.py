"""
A standby sequencer's ledger, kept equal to the leaves topic as the active sequencer writes it.

Why follow instead of rebuilding at takeover: a standby that already holds
every leaf on the bus takes over in the time the broker needs to notice the
active one has gone (`safebus.leases`), not in the time a rebuild of the
whole log takes.  Every leaf is proven as it is taken in, as a rebuild
proves it (`AuditLedger.import_leaves`: its place, its hash, the log's
receipt), and every checkpoint against the tree at its size.

The topic is the log; a ledger is a copy.  A leaf the ledger holds at an
index where the topic holds a different one means this ledger was written by
a sequencer that has since been fenced (it appended leaves its transaction
never committed, and its successor filled those places).  That is
`LedgerForked`: the caller sets the ledger aside and follows from the start.
A ledger *longer* than the topic, agreeing with it where both hold a leaf,
is this sequencer's own work not yet published (it stopped between storing a
batch and publishing it); whoever leads next publishes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer

from safebus.consumers.audit.leaf_records import leaf_from_record, signed_at
from safebus.consumers.audit.ledger import AuditLedger, Leaf, LedgerImportError
from safebus.errors import SafebusError
from safebus.kafka_io import read_to_end, reader_consumer
from safebus.logs import get_logger
from safebus.records import Record
from safebus.topics import TopicNames

__all__ = ["CaughtUp", "LeafFollower", "LedgerForked"]

_log = get_logger("audit.follower")

_BATCH = 5000


class LedgerForked(SafebusError):
    """The ledger holds a leaf the leaves topic contradicts: it was written by a sequencer since fenced."""


@dataclass(frozen=True, kw_only=True)
class CaughtUp:
    """Where the topics stood when a catch-up reached their ends."""

    imported: int
    """Leaves taken into the ledger by this catch-up."""
    topic_leaves: int
    """How many leaves the leaves topic holds (its highest index + 1)."""
    topic_checkpoint: int
    """The size of the newest checkpoint on the checkpoint topic (0: none)."""


class LeafFollower:
    """Reads the leaves and checkpoint topics from where it last stopped, into `ledger`."""

    def __init__(self, bootstrap: str, names: TopicNames, ledger: AuditLedger) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.ledger = ledger
        self._consumer: Consumer | None = None
        self._next = {names.audit_leaves: 0, names.checkpoints: 0}
        """The next offset to read on each topic."""
        self._topic_leaves = 0
        self._topic_checkpoint = 0

    def restart(self) -> None:
        """Read both topics from the start again (after the ledger was set aside)."""
        self._next = dict.fromkeys(self._next, 0)
        self._topic_leaves = self._topic_checkpoint = 0

    def catch_up(self, *, timeout_s: float = 30.0) -> CaughtUp:
        """
        Take in every committed leaf, then every checkpoint, up to the topics' ends; say where they stood.

        Raises `LedgerForked` if the ledger contradicts the topic, `LedgerImportError` if the topic
        contradicts itself (a gap, a leaf that does not verify), `BrokerError` if the broker is away.
        """
        start = dict(self._next)
        try:
            return self._catch_up(timeout_s=timeout_s)
        except Exception:
            self._next = start  # read again next time: what was imported is then found equal and skipped
            raise

    def _catch_up(self, *, timeout_s: float) -> CaughtUp:
        imported = 0
        pending: list[Leaf] = []
        for record in self._read(self.names.audit_leaves, timeout_s=timeout_s):
            leaf = leaf_from_record(record)
            self._topic_leaves = max(self._topic_leaves, leaf.index + 1)
            held = self.ledger.size + len(pending)
            if leaf.index < held:
                earlier = pending[leaf.index - self.ledger.size] if leaf.index >= self.ledger.size \
                    else self.ledger.leaf(leaf.index)
                if earlier != leaf:
                    raise LedgerForked(f"leaf {leaf.index} on the topic (offset {record.offset}) is not this "
                                       "ledger's leaf at that index")
                continue
            if leaf.index > held:
                raise LedgerImportError(f"leaf {leaf.index} on the topic (offset {record.offset}) where leaf "
                                        f"{held} comes next")
            pending.append(leaf)
            if len(pending) >= _BATCH:
                imported += self.ledger.import_leaves(pending)
                pending = []
        imported += self.ledger.import_leaves(pending)
        for record in self._read(self.names.checkpoints, timeout_s=timeout_s):
            size = int(record.key or b"0")
            self._topic_checkpoint = max(self._topic_checkpoint, size)
            if size <= self.ledger.size and self.ledger.checkpoint_at(size) is None:
                stamped = signed_at(record)
                if stamped is None:
                    raise LedgerImportError(f"checkpoint of {size} leaves without its signing time")
                self.ledger.import_checkpoint(record.value, created_at=stamped)
        if imported:
            _log.info("audit_leaves_followed", imported=imported, size=self.ledger.size)
        return CaughtUp(imported=imported, topic_leaves=self._topic_leaves, topic_checkpoint=self._topic_checkpoint)

    def _read(self, topic: str, *, timeout_s: float) -> Iterator[Record]:
        """The committed records of one-partition `topic` from where this follower stopped to its end."""
        for record in read_to_end(self._reader(), topic, {0: self._next[topic]}, timeout_s=timeout_s):
            self._next[topic] = record.offset + 1
            yield record

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = reader_consumer(self.bootstrap)
        return self._consumer

    def close(self) -> None:
        """Close the reader."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

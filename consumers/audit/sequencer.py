"""
The audit sequencer: the one process that assigns audit facts their place in the log.

It reads every topic that carries evidence — the audit topic (decisions,
erasures, deliveries, rule sets, views, acknowledgements, escalations), the
dead-letter topic and the agency directory — turns each record into a fact
(`safebus.consumers.audit.facts`), appends the new ones to the ledger, and
signs a checkpoint at least every N leaves or T seconds, publishing it on the
checkpoint topic so anyone holding an older one can demand a consistency proof.
Every leaf is also written, in index order, to the leaves topic, before any
checkpoint that covers it: a new host rebuilds the ledger from there
(`safebus.consumers.audit.leaf_records`, ``safebus audit rebuild``).

Ordering and failure: a batch's leaves are stored (one transaction) before its
offsets are committed, and appending is idempotent by fact id, so a crash
re-reads and re-skips.  A record on the audit or directory topic that is not a
valid fact is not dropped: it is dead-lettered with the reason, and that dead
letter in turn becomes a fact.  The leaf order across the audit topic's
partitions is the order this sequencer read them in; what the log guarantees
is that, once appended, a fact's place never changes.

Attribution: a record on the audit topic is appended only if one of the
partnership's own components signed it with a key the directory lists
(`safebus.fact_signing`); an unsigned fact, one signed by a key the directory
does not hold, or one whose bytes the signature does not cover is
dead-lettered with the reason (``unsigned-fact``, ``unknown-fact-signer``,
``revoked-key``, ``bad-fact-signature``), so what anyone with a Kafka client
writes there is evidenced as a refusal, never as a fact.

One active, one hot standby (docs/adr/0017): every sequencer instance joins
the lease group (`safebus.leases`); the one that holds the lease leads, the
others follow the leaves topic into their own ledgers
(`safebus.consumers.audit.leaf_follower`).  A new leader first takes over the
writers' transactional id, which fences its predecessor at the broker
(`safebus.fenced_producer`), then takes in every leaf its predecessor
committed, and only then reads the audit topic from the committed offsets.
Leaves, dead letters and checkpoints are written in transactions, so a
fenced zombie adds nothing; what it stored locally but never committed is
set aside when it next follows, and its facts are read again by its
successor (their offsets were never committed).

A fact signed by a service key the directory does not hold *yet* (a service
rotated or added while the sequencer runs) is dead-lettered as above and
also held: after the next directory change it is checked again and, if it
now verifies, appended (bounded: `safebus.dead_letter_retry`).  The log then
shows the refusal and, later, the fact.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import datetime

from safebus.consumers._delivery import delivery_consumer, origin_of, run_batches
from safebus.consumers.audit.facts import (
    NotAFact,
    fact_from_audit_record,
    fact_from_dead_letter,
    fact_from_directory_record,
    leaf_bytes,
)
from safebus.consumers.audit.leaf_follower import CaughtUp, LeafFollower, LedgerForked
from safebus.consumers.audit.leaf_records import NotALeaf, checkpoint_record, leaf_from_record, leaf_record
from safebus.consumers.audit.ledger import AuditLedger, LedgerImportError, NewFact, StoredCheckpoint
from safebus.dead_letter_retry import HeldDeadLetters
from safebus.directory import Directory
from safebus.errors import BrokerError
from safebus.fact_signing import UnattributedFact, verify_fact
from safebus.fenced_producer import FencedProducer, WriterFenced
from safebus.health import WorkerHealth
from safebus.kafka_io import Publisher, iter_topic, produce_all
from safebus.leases import Lease
from safebus.live_directory import Refresher, following
from safebus.logs import get_logger
from safebus.metrics import AUDIT_CHECKPOINT_AGE, AUDIT_LEDGER_LEAVES
from safebus.records import Output, Record, dead_letter
from safebus.schemas._base import Event
from safebus.topics import TopicNames

__all__ = [
    "GROUP_ID",
    "LEASE_GROUP",
    "SEQUENCE_STAGE",
    "AuditSequencer",
    "transactional_id",
]

_log = get_logger("audit.sequencer")

SEQUENCE_STAGE = "audit-sequence"
GROUP_ID = "safebus-audit-sequencer"
_STANDBY_READ_S = 1.0
"""A standby's read of the leaves topic gives up this soon without progress (a dead leader's open transaction
holds the topic's end back until its successor fences it), so it comes back to its lease in time to take over."""
LEASE_GROUP = "{prefix}-audit-sequencer-lease"
"""The group whose one-partition lease (on the checkpoint topic) makes its holder the active sequencer."""


def transactional_id(names: TopicNames) -> str:
    """The transactional id every sequencer of a partnership writes under: a new leader fences the old."""
    return f"{names.prefix}-audit-sequencer"


class AuditSequencer:
    """Appends every fact on the bus to the ledger, once, and publishes checkpoints."""

    def __init__(self, *, bootstrap: str, names: TopicNames, ledger: AuditLedger,
                 clock: Callable[[], datetime], directory: Callable[[], Directory],
                 on_appended: Callable[[list[int]], object] | None = None) -> None:
        """
        `directory` returns the current verified directory (whose keys may sign facts);
        `on_appended` is told the new leaf indexes after each batch (the projection follows the log).
        """
        self.bootstrap = bootstrap
        self.directory = directory
        self.names = names
        self.ledger = ledger
        self.clock = clock
        self.on_appended = on_appended
        self._checkpoints_published: int | None = None
        """The size of the newest checkpoint on the checkpoint topic (None: not read yet)."""
        self._head: Callable[[str], Record | None] = self._last_record
        """The last record of a topic (replaced where there is no broker)."""
        self._producer: Publisher = FencedProducer(bootstrap, transactional_id(names))
        self._follower = LeafFollower(bootstrap, names, ledger)
        self._lease: Lease | None = None
        self.on_ledger_set_aside: Callable[[], object] | None = None
        """Told when the ledger was set aside and started again (the projection must start again too)."""
        self.leading = False
        """Whether this instance is the active sequencer now."""
        self._refresher = Refresher(directory)
        self._held: HeldDeadLetters[NewFact] = HeldDeadLetters(what="audit-facts", clock=clock)
        self._checkpoint_at: datetime | None = None
        """When the newest checkpoint was signed (for the checkpoint-age metric)."""
        self._leaves_published: int | None = None
        """How many leaves the leaves topic holds (None: not read yet; read from its head at the first publish)."""

    @property
    def topics(self) -> list[str]:
        """What the sequencer reads."""
        return [self.names.audit, self.names.deadletter, self.names.agencies]

    def run(self, stop: threading.Event, *, batch_size: int = 1000, health: WorkerHealth | None = None) -> None:
        """
        Sequence (or stand by) until `stop` is set; the leader then signs a last checkpoint.

        `health` hears the loop (``--health-port``): a standby is alive and ready once it has
        caught up with the leaves topic.
        """
        latest = self.ledger.latest_checkpoint()  # the last run may have stopped before publishing it
        if latest is not None:
            self._checkpoint_at = latest.created_at
        AUDIT_LEDGER_LEAVES.set(self.ledger.size)
        AUDIT_CHECKPOINT_AGE.set_function(self._checkpoint_age)
        lease = self._lease = Lease(self.bootstrap, group=LEASE_GROUP.format(prefix=self.names.prefix),
                                    topic=self.names.checkpoints).start()
        if isinstance(self._producer, FencedProducer):
            self._producer.may_begin = lease.held  # a writer that lost its producer begins again only as leader
        try:
            with following(self.directory, bootstrap=self.bootstrap, topic=self.names.agencies):
                while self._stand_by(stop, lease, health):
                    self._lead(stop, lease, batch_size=batch_size, health=health)
        finally:
            lease.close()  # a leader's lease passes to the standby at once
            self._follower.close()
            if isinstance(self._producer, FencedProducer):
                self._producer.close()

    def _stand_by(self, stop: threading.Event, lease: Lease, health: WorkerHealth | None) -> bool:
        """Follow the leaves topic until the lease is ours (True) or the worker stops (False)."""
        _log.info("audit_sequencer_standing_by", size=self.ledger.size)
        while not stop.is_set():
            if health is not None:
                health.beat()
            try:
                self._follow(timeout_s=_STANDBY_READ_S)
                if health is not None:
                    health.mark_ready()
            except BrokerError as exc:
                _log.warning("audit_follow_failed", error=str(exc)[:200])
            except (LedgerImportError, NotALeaf) as exc:  # not this log's key, or a leaf that does not prove
                _log.error("audit_follow_refused", error=str(exc)[:300])
            if lease.wait_held(1.0):
                return not stop.is_set()
        return False

    def _follow(self, *, timeout_s: float = 30.0) -> CaughtUp:
        """Take in what the leader committed; a ledger the topic contradicts is set aside and followed afresh."""
        try:
            caught = self._follower.catch_up(timeout_s=timeout_s)
        except LedgerForked as exc:
            aside = self.ledger.set_aside(now=self.clock())
            _log.error("audit_ledger_set_aside", kept_as=aside.name, reason=str(exc))
            self._follower.restart()
            if self.on_ledger_set_aside is not None:
                self.on_ledger_set_aside()
            caught = self._follower.catch_up(timeout_s=timeout_s)
        if caught.imported:
            size = self.ledger.size
            AUDIT_LEDGER_LEAVES.set(size)
            if self.on_appended is not None:
                self.on_appended(list(range(size - caught.imported, size)))
        return caught

    def _lead(self, stop: threading.Event, lease: Lease, *, batch_size: int, health: WorkerHealth | None) -> None:
        """Fence the previous leader, take in all it committed, then sequence until stopped or deposed."""
        started = time.monotonic()
        try:
            if isinstance(self._producer, FencedProducer):
                self._producer.begin()
            caught = self._follow()
        except (BrokerError, LedgerImportError, NotALeaf) as exc:
            _log.warning("audit_takeover_failed", error=str(exc)[:200])
            stop.wait(1.0)
            return
        self._leaves_published = caught.topic_leaves
        self._checkpoints_published = caught.topic_checkpoint
        self.leading = True
        _log.info("audit_sequencer_leading", size=self.ledger.size, unpublished=self.ledger.size - caught.topic_leaves,
                  takeover_s=round(time.monotonic() - started, 2))
        leading = lease.while_held(stop)
        try:
            run_batches(lambda: delivery_consumer(self.bootstrap, GROUP_ID), self.topics, self.sequence, leading,
                        batch_size=batch_size, idle=self._idle, health=health)
            if stop.is_set() and lease.held():
                self.checkpoint_if_due(force=True)
        except WriterFenced as exc:
            _log.warning("audit_sequencer_fenced", reason=str(exc))
        finally:
            self.leading = False
            self._leaves_published = self._checkpoints_published = None

    def _checkpoint_age(self) -> float:
        """Seconds since the last checkpoint was signed (read by the metrics thread: one attribute, no database)."""
        signed = self._checkpoint_at
        return float("nan") if signed is None else (self.clock() - signed).total_seconds()

    def sequence(self, records: list[Record]) -> list[int]:
        """Append the facts `records` carry (dead-lettering what is not a fact); return new leaf indexes."""
        now = self.clock()
        facts: list[NewFact] = self._retry_held()
        refused: list[Output] = []
        directory: Directory | None = None  # read once per batch, and only if the batch holds audit records
        for record in records:
            fact: Event
            try:
                if record.topic == self.names.deadletter:
                    fact = fact_from_dead_letter(record, observed_at=now)
                elif record.topic == self.names.agencies:
                    fact = fact_from_directory_record(record, observed_at=now)
                else:
                    directory = directory or self.directory()
                    signer = verify_fact(record, directory)
                    fact = fact_from_audit_record(record)
                    _log.debug("audit_fact_attributed", fact_id=fact.event_id, signer=signer)
                new = NewFact(fact_id=fact.event_id, fact_type=fact.event_type, body=leaf_bytes(fact))
            except UnattributedFact as exc:
                _log.warning("audit_fact_unattributed", topic=record.topic, partition=record.partition,
                             offset=record.offset, reason=exc.reason)
                self._held.hold(record, exc.reason)
                refused.append(self._refuse(record, exc.reason, str(exc)))
                continue
            except NotAFact as exc:
                refused.append(self._refuse(record, "not-an-audit-fact", str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - one record must never stop the log (docs/adr/0003)
                _log.error("audit_record_internal_error", topic=record.topic, partition=record.partition,
                           offset=record.offset, error=type(exc).__name__)
                refused.append(self._refuse(record, "internal-error", type(exc).__name__))
                continue
            facts.append(new)
        if refused:
            produce_all(self._producer, refused)
        appended = self.ledger.append(facts, now=now)
        size = self.ledger.size  # one read of the ledger per batch, for the gauge and the log line
        AUDIT_LEDGER_LEAVES.set(size)
        _log.info("audit_sequenced", received=len(records), appended=len(appended),
                  already_logged=len(facts) - len(appended), refused=len(refused), size=size)
        if appended and self.on_appended is not None:
            self.on_appended(appended)
        self.publish_leaves()
        self.checkpoint_if_due()
        return appended

    def _refuse(self, record: Record, reason: str, detail: str) -> Output:
        return dead_letter(raw=record.value, origin=origin_of(record), stage=SEQUENCE_STAGE, reason=reason,
                           detail=detail, topic=self.names.deadletter)

    def _retry_held(self) -> list[NewFact]:
        """After a directory change, the held facts whose signer is now known (see the module docstring)."""
        if not self._refresher.changed() or not len(self._held):
            return []
        directory = self.directory()

        def admit(record: Record) -> NewFact | Output:
            try:
                verify_fact(record, directory)
                fact = fact_from_audit_record(record)
            except (UnattributedFact, NotAFact) as exc:
                return self._refuse(record, getattr(exc, "reason", "not-an-audit-fact"), str(exc))
            except Exception as exc:  # noqa: BLE001 - a retried record must never stop the log either
                return self._refuse(record, "internal-error", type(exc).__name__)
            return NewFact(fact_id=fact.event_id, fact_type=fact.event_type, body=leaf_bytes(fact))

        return self._held.retry(admit).admitted

    def _idle(self) -> None:
        """Between batches: append held facts a directory change made attributable, then checkpoint if due."""
        facts = self._retry_held()
        if facts:
            appended = self.ledger.append(facts, now=self.clock())
            AUDIT_LEDGER_LEAVES.set(self.ledger.size)
            if appended and self.on_appended is not None:
                self.on_appended(appended)
        self.publish_leaves()
        self.checkpoint_if_due()

    def publish_leaves(self, *, chunk: int = 1000) -> int:
        """
        Write the leaves the leaves topic lacks, in index order; return how many were written.

        Where the topic stands is read from its last record once, then counted; a publish that fails
        (the broker away) raises `BrokerError` and is repeated from the same leaf next time, so a leaf
        may appear twice (a rebuild takes it once) but never out of order or not at all.
        """
        if self._leaves_published is None:
            head = self._head(self.names.audit_leaves)
            self._leaves_published = leaf_from_record(head).index + 1 if head is not None else 0
        written = 0
        while self._leaves_published < self.ledger.size:
            leaves = itertools.islice(self.ledger.leaves(self._leaves_published, batch=chunk), chunk)
            outputs = [leaf_record(leaf, topic=self.names.audit_leaves) for leaf in leaves]
            produce_all(self._producer, outputs)
            self._leaves_published += len(outputs)
            written += len(outputs)
        return written

    def checkpoint_if_due(self, *, force: bool = False) -> StoredCheckpoint | None:
        """Sign and store a checkpoint if enough leaves or time have passed (or `force`); publish every one stored."""
        self.publish_leaves()  # never sign over a leaf the topic lacks (a fenced writer's are never committed)
        self.publish_checkpoints()  # raises BrokerError while the broker is away: retried at the next call
        now = self.clock()
        if not (force or self.ledger.checkpoint_due(now)):
            return None
        checkpoint = self.ledger.make_checkpoint(now=now)
        if checkpoint is not None:
            self._checkpoint_at = checkpoint.created_at  # signed and stored, even if publishing must wait
            self.publish_checkpoints()
            _log.info("audit_checkpoint", size=checkpoint.size, root=checkpoint.root.hex())
        return checkpoint

    def publish_checkpoints(self) -> int:
        """
        Publish, in size order, every stored checkpoint newer than the checkpoint topic's newest; return how many.

        Every one, not only the sequencer's own: an export or a proof signs one for the live log too
        (`safebus.consumers.audit.verify`), and a rebuild must find each checkpoint the ledger holds.
        Each goes after the leaves it covers (`publish_leaves`).
        """
        if self._checkpoints_published is None:
            head = self._head(self.names.checkpoints)
            self._checkpoints_published = int(head.key or b"0") if head is not None else 0
        published = 0
        for checkpoint in self.ledger.checkpoints(larger_than=self._checkpoints_published):
            self.publish_leaves()  # a checkpoint is never on the bus before the leaves it covers
            produce_all(self._producer, [checkpoint_record(checkpoint, topic=self.names.checkpoints)])
            self._checkpoints_published = checkpoint.size
            published += 1
        return published

    def _last_record(self, topic: str) -> Record | None:
        head = list(iter_topic(self.bootstrap, topic, last_only=True))
        return head[-1] if head else None

"""
The delivery loop shared by the consumers that fill local stores from egress topics.

The school inbox and the referral queues deliver the same way; the loop lives
here once so the two cannot drift apart on the properties that matter:

- offsets are committed manually, and only after `deliver` returned (so after
  the store's transaction and after any dead letters were acknowledged): a
  crash at any point redelivers, and the stores deduplicate;
- the first record of a batch is awaited with a blocking poll and the rest are
  taken without waiting, because ``consume(n, timeout)`` would hold every
  record for the whole timeout whenever fewer than n are ready;
- ``read_committed``, so records of an aborted transaction never arrive;
- a broker outage is waited out, never a reason to exit (docs/adr/0003,
  "Outages heal themselves"): a batch whose delivery fails (its dead letters
  or facts not confirmed) is delivered again after a growing, capped pause
  until it succeeds or the worker is stopped, and only then committed; a failed
  commit is logged and the batch is simply redelivered later; and a consumer
  that makes no progress for `WEDGED_AFTER_S` after a broker error, although
  the broker answers again, is replaced by a fresh one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from safebus.directory import Agency
from safebus.errors import BrokerError
from safebus.health import WorkerHealth
from safebus.kafka_io import (
    GROUP_TIMING,
    RECONNECT,
    WEDGED_AFTER_S,
    ReliableProducer,
    backoff_delays,
    produce_all,
    to_record,
)
from safebus.kafka_security import client_config
from safebus.keys import PrivateKeys
from safebus.logs import get_logger
from safebus.metrics import CONSUMER_LAG, RECORDS_IN, SHARES_DELIVERED, count_dead_letters
from safebus.records import Origin, Output, Record, dead_letter

__all__ = [
    "DELIVER_STAGE",
    "LAG_EVERY_S",
    "HostedAgency",
    "Stopping",
    "admit_guarded",
    "deliver_batch",
    "delivery_consumer",
    "origin_of",
    "refuse",
    "run_batches",
]

_log = get_logger("consumer.delivery")

LAG_EVERY_S = 5.0
"""How often the loop reports its consumer lag."""
A = TypeVar("A")

DELIVER_STAGE = "deliver"
"""The dead-letter stage of everything a consumer refuses (unopenable, invalid, misaddressed)."""



@dataclass(frozen=True, kw_only=True)
class HostedAgency:
    """An agency whose inbox or queue a worker fills, with its private keys (one shape for every worker)."""

    agency: Agency
    keys: list[PrivateKeys]
    """The agency's keyring: every generation it still holds, current last."""

class Stopping(Protocol):
    """What the loop asks of its stop signal: a `threading.Event`, or anything that answers the same two questions."""

    def is_set(self) -> bool:
        """Whether to stop now."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` for the signal; whether it is set."""


def delivery_consumer(bootstrap: str, group_id: str) -> Consumer:
    """A consumer in `group_id` that commits nothing on its own and reads from the start of new topics."""
    return Consumer(client_config(
        bootstrap,
        **{"group.id": group_id,
           "enable.auto.commit": False,
           "auto.offset.reset": "earliest",
           "isolation.level": "read_committed",
           **RECONNECT,
           **GROUP_TIMING},
    ))


def run_batches(
    consumers: Callable[[], Consumer],
    topics: Sequence[str] | Callable[[], Sequence[str]],
    deliver: Callable[[list[Record]], object],
    stop: Stopping,
    *,
    batch_size: int = 500,
    poll_s: float = 0.5,
    idle: Callable[[], object] | None = None,
    wedged_after_s: float = WEDGED_AFTER_S,
    health: WorkerHealth | None = None,
) -> None:
    """
    Subscribe a consumer from `consumers` to `topics` and hand each batch to `deliver`, committing after it.

    Runs until `stop`.  `idle` runs whenever a poll finds nothing, for work
    that is due by time rather than by arrival (an audit checkpoint, an
    escalation); if it fails on the broker it is logged and runs again at the
    next idle poll.  `consumers` makes a fresh consumer (at start and whenever
    the one in use is wedged).  `topics` may be a callable, asked before each
    poll: when its answer changes (a live directory added or retired an
    agency) the consumer resubscribes, so the worker follows the directory
    without a restart.

    `health`, if given, hears every pass of the loop (liveness), is marked
    ready the first time the consumer holds partitions and finds nothing more
    to read (caught up past start-up), and the loop reports records read and
    consumer lag per topic (`safebus.metrics`).
    """
    loop = _Loop(consumers, topics if callable(topics) else (lambda: topics), wedged_after_s=wedged_after_s)
    lag_due = 0.0
    try:
        while not stop.is_set():
            if health is not None:
                health.beat()
            if time.monotonic() >= lag_due:
                loop.report_lag()
                lag_due = time.monotonic() + LAG_EVERY_S
            loop.replace_if_wedged()
            loop.resubscribe_if_changed()
            first = loop.consumer.poll(poll_s)
            if first is None:
                loop.idle_poll()
                if health is not None and loop.assigned():
                    health.mark_ready()
                if idle is not None:
                    _try("idle_failed", idle)
                continue
            records = []
            for msg in [first, *loop.consumer.consume(num_messages=batch_size - 1, timeout=0)]:
                error = msg.error()
                if error is None:
                    records.append(to_record(msg))
                    RECORDS_IN.labels(topic=records[-1].topic).inc()
                elif error.code() != KafkaError._PARTITION_EOF:
                    loop.trouble(str(error))
            if records and _deliver_until_done(deliver, records, stop):
                loop.commit()
    finally:
        loop.consumer.close()


def _deliver_until_done(deliver: Callable[[list[Record]], object], records: list[Record],
                        stop: Stopping) -> bool:
    """Deliver `records`, retrying with capped backoff while the broker fails; False if stopped first."""
    for attempt, delay in enumerate(backoff_delays(), start=1):
        try:
            deliver(records)
        except (BrokerError, KafkaException) as exc:
            _log.warning("delivery_failed_retrying", attempt=attempt, retry_in_s=delay, records=len(records),
                         first_topic=records[0].topic, first_offset=records[0].offset, error=str(exc)[:200])
            if stop.wait(delay):
                return False
            continue
        if attempt > 1:
            _log.info("delivery_recovered", attempts=attempt, records=len(records))
        return True
    return False  # unreachable: the delays never end


def _try(event: str, work: Callable[[], object]) -> None:
    try:
        work()
    except (BrokerError, KafkaException) as exc:
        _log.warning(event, error=str(exc)[:200])


class _Loop:
    """The consumer in use, and whether it has made progress since the broker last failed it."""

    def __init__(self, consumers: Callable[[], Consumer], topics: Callable[[], Sequence[str]], *,
                 wedged_after_s: float) -> None:
        self._consumers = consumers
        self._wanted = topics
        self._topics = sorted(topics())
        self._wedged_after_s = wedged_after_s
        self._trouble_since: float | None = None
        self.replacements = 0
        self.consumer = self._subscribed()

    def _subscribed(self) -> Consumer:
        consumer = self._consumers()
        consumer.subscribe(self._topics, on_lost=self._on_lost)
        return consumer

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """
        The group took the partitions away (session timed out while the broker was away).

        A consumer that lost its assignment reports nothing more through poll
        while it rejoins; if the rejoin never completes (seen on a loaded
        machine after a broker restart: the coordinator request sits queued for
        minutes) it would idle for ever, caught up with nothing.  Counting the
        loss as trouble starts the wedge clock, so the consumer is replaced if no
        assignment comes back in time.
        """
        self.trouble(f"assignment lost ({len(partitions)} partitions)")

    def resubscribe_if_changed(self) -> None:
        """Follow a change of the wanted topics (a live directory's new or retired agency)."""
        try:
            wanted = sorted(self._wanted())  # may retry held records, which publishes: the broker may be down
        except (BrokerError, KafkaException) as exc:
            _log.warning("topics_refresh_failed", error=str(exc)[:200])
            return
        if wanted != self._topics:
            _log.info("resubscribing", added=sorted(set(wanted) - set(self._topics)),
                      removed=sorted(set(self._topics) - set(wanted)))
            self._topics = wanted
            self.consumer.subscribe(wanted, on_lost=self._on_lost)

    def trouble(self, error: str) -> None:
        """A broker error was seen: progress is now expected within the wedge time."""
        _log.warning("consume_error", error=error)
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()

    def idle_poll(self) -> None:
        """A poll found nothing: healthy if the consumer holds partitions (it is simply caught up)."""
        if self._trouble_since is not None and self.assigned():
            self._progress()

    def report_lag(self) -> None:
        """Records not yet read on the assigned partitions, per topic (the watermarks librdkafka already holds)."""
        try:
            positions = self.consumer.position(self.consumer.assignment())
        except KafkaException:
            return
        lag: dict[str, int] = dict.fromkeys(self._topics, 0)
        for tp in positions:
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0 and tp.offset >= 0:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(high - tp.offset, 0)
        for topic, behind in lag.items():
            CONSUMER_LAG.labels(topic=topic).set(behind)

    def commit(self) -> None:
        """Commit the delivered batch; a failure only means it is redelivered (and deduplicated) later."""
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            self.trouble(f"commit failed, the batch will be redelivered: {exc}")
            return
        self._progress()

    def replace_if_wedged(self) -> None:
        """Swap in a fresh consumer when this one has been stuck since a broker error, the broker being back."""
        since = self._trouble_since
        if since is None or time.monotonic() - since < self._wedged_after_s or not self._broker_answers():
            return
        old, self.consumer = self.consumer, self._subscribed()
        self.replacements += 1
        self._trouble_since = time.monotonic()  # the new one gets the same time to show progress
        _log.warning("consumer_replaced", stuck_s=round(time.monotonic() - since, 1), replacements=self.replacements)
        # Closing may wait on the group coordinator; the old consumer must not hold up the new one.
        threading.Thread(target=old.close, name="close-wedged-consumer", daemon=True).start()

    def _progress(self) -> None:
        if self._trouble_since is not None:
            _log.info("consumer_recovered", after_s=round(time.monotonic() - self._trouble_since, 1))
        self._trouble_since = None

    def assigned(self) -> bool:
        """Whether the consumer holds partitions now."""
        try:
            return bool(self.consumer.assignment())
        except KafkaException:
            return False

    def _broker_answers(self) -> bool:
        try:
            self.consumer.list_topics(self._topics[0], timeout=2)
        except KafkaException:
            return False
        return True


def deliver_batch(
    records: list[Record],
    admit: Callable[[bytes, Origin], A | Output],
    store_many: Callable[[list[A]], int],
    producer: Producer | ReliableProducer,
    *,
    what: str,
    deadletter_topic: str | None = None,
) -> int:
    """
    Admit each record or refuse it; dead-letter the refused, then store the admitted in one go.

    Dead letters are confirmed by the broker before the store's transaction, and
    both happen before the caller commits offsets: nothing refused is lost and
    nothing admitted is skipped.  Whatever `admit` raises for one record
    becomes that record's dead letter (``internal-error``) on
    `deadletter_topic`, so no record can stop the consumer.  Returns how many
    admitted records were new.
    """
    admitted: list[A] = []
    refused: list[Output] = []
    for record in records:
        outcome = admit_guarded(admit, record, deadletter_topic=deadletter_topic)
        if isinstance(outcome, Output):
            refused.append(outcome)
        else:
            admitted.append(outcome)
    if refused:
        produce_all(producer, refused)
        count_dead_letters(refused)
    new = store_many(admitted) if admitted else 0
    SHARES_DELIVERED.labels(what=what).inc(new)
    _log.info(f"{what}_delivered", received=len(records), new=new, redelivered=len(admitted) - new,
              dead_lettered=len(refused))
    return new


def admit_guarded(admit: Callable[[bytes, Origin], A | Output], record: Record, *,
                  deadletter_topic: str | None) -> A | Output:
    """`admit` for one record; if it raises, that record's dead letter instead (never raises with a topic)."""
    origin = origin_of(record)
    try:
        return admit(record.value, origin)
    except Exception as exc:
        if deadletter_topic is None:
            raise
        _log.error("delivery_internal_error", topic=origin.topic, partition=origin.partition, offset=origin.offset,
                   error=type(exc).__name__)
        return dead_letter(raw=record.value, origin=origin, stage=DELIVER_STAGE, reason="internal-error",
                           detail=type(exc).__name__, topic=deadletter_topic)


def origin_of(record: Record) -> Origin:
    """Where `record` came from, as a dead letter names it."""
    return Origin(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key)


def refuse(raw: bytes, origin: Origin, *, reason: str, detail: str, deadletter_topic: str) -> Output:
    """The dead letter for a record a consumer will not store; `detail` must hold no payload content."""
    _log.warning("delivery_dead_lettered", topic=origin.topic, offset=origin.offset, reason=reason)
    return dead_letter(raw=raw, origin=origin, stage=DELIVER_STAGE, reason=reason, detail=detail,
                       topic=deadletter_topic)

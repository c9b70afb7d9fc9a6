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
- ``read_committed``, so records of an aborted transaction never arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, Producer

from safebus.kafka_io import produce_all, to_record
from safebus.logs import get_logger
from safebus.records import Origin, Output, Record, dead_letter

_log = get_logger("consumer.delivery")
A = TypeVar("A")

DELIVER_STAGE = "deliver"
"""The dead-letter stage of everything a consumer refuses (unopenable, invalid, misaddressed)."""


def delivery_consumer(bootstrap: str, group_id: str) -> Consumer:
    """A consumer in `group_id` that commits nothing on its own and reads from the start of new topics."""
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })


def run_batches(
    consumer: Consumer,
    topics: Sequence[str] | Callable[[], Sequence[str]],
    deliver: Callable[[list[Record]], object],
    stop: threading.Event,
    *,
    batch_size: int = 500,
    poll_s: float = 0.5,
    idle: Callable[[], object] | None = None,
) -> None:
    """
    Subscribe to `topics` and hand each batch of records to `deliver`, committing after it, until `stop`.

    `idle` runs whenever a poll finds nothing, for work that is due by time
    rather than by arrival (an audit checkpoint, an escalation).  `topics` may
    be a callable, asked before each poll: when its answer changes (a live
    directory added or retired an agency) the consumer resubscribes, so the
    worker follows the directory without a restart.
    """
    wanted = topics if callable(topics) else (lambda: topics)
    subscribed = sorted(wanted())
    consumer.subscribe(subscribed)
    try:
        while not stop.is_set():
            now_wanted = sorted(wanted())
            if now_wanted != subscribed:
                _log.info("resubscribing", added=sorted(set(now_wanted) - set(subscribed)),
                          removed=sorted(set(subscribed) - set(now_wanted)))
                subscribed = now_wanted
                consumer.subscribe(subscribed)
            first = consumer.poll(poll_s)
            if first is None:
                if idle is not None:
                    idle()
                continue
            records = []
            for msg in [first, *consumer.consume(num_messages=batch_size - 1, timeout=0)]:
                error = msg.error()
                if error is None:
                    records.append(to_record(msg))
                elif error.code() != KafkaError._PARTITION_EOF:
                    _log.warning("consume_error", error=str(error))
            if records:
                deliver(records)
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def deliver_batch(
    records: list[Record],
    admit: Callable[[bytes, Origin], A | Output],
    store_many: Callable[[list[A]], int],
    producer: Producer,
    *,
    what: str,
) -> int:
    """
    Admit each record or refuse it; dead-letter the refused, then store the admitted in one go.

    Dead letters are confirmed by the broker before the store's transaction, and
    both happen before the caller commits offsets: nothing refused is lost and
    nothing admitted is skipped.  Returns how many admitted records were new.
    """
    admitted: list[A] = []
    refused: list[Output] = []
    for record in records:
        outcome = admit(record.value, origin_of(record))
        if isinstance(outcome, Output):
            refused.append(outcome)
        else:
            admitted.append(outcome)
    if refused:
        produce_all(producer, refused)
    new = store_many(admitted) if admitted else 0
    _log.info(f"{what}_delivered", received=len(records), new=new, redelivered=len(admitted) - new,
              dead_lettered=len(refused))
    return new


def origin_of(record: Record) -> Origin:
    """Where `record` came from, as a dead letter names it."""
    return Origin(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key)


def refuse(raw: bytes, origin: Origin, *, reason: str, detail: str, deadletter_topic: str) -> Output:
    """The dead letter for a record a consumer will not store; `detail` must hold no payload content."""
    _log.warning("delivery_dead_lettered", topic=origin.topic, offset=origin.offset, reason=reason)
    return dead_letter(raw=raw, origin=origin, stage=DELIVER_STAGE, reason=reason, detail=detail,
                       topic=deadletter_topic)

"""
Small confluent-kafka helpers shared by producers, consumers, the demo and tests.

Producers are idempotent with ``acks=all`` so a retry never writes a record
twice at the broker; readers use ``read_committed``.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from safebus.errors import BrokerError
from safebus.limits import PRODUCER_MAX_REQUEST_BYTES
from safebus.records import Output, Record


def reliable_producer(bootstrap: str, **overrides: object) -> Producer:
    """Return an idempotent, acks=all producer."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES,  # safebus.limits: below the broker's, above any dead letter
        "logger": logging.getLogger("safebus.librdkafka"),
        **overrides,
    }
    return Producer(config)


def produce_all(producer: Producer, outputs: list[Output], *, timeout_s: float = 30.0) -> None:
    """Produce `outputs` and wait until the broker has every one; raises BrokerError otherwise."""
    errors: list[str] = []

    def _on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for output in outputs:
        producer.produce(output.topic, key=output.key, value=output.value, headers=list(output.headers),
                         on_delivery=_on_delivery)
    remaining = producer.flush(timeout_s)
    if remaining or errors:
        raise BrokerError(f"{remaining} records undelivered; errors: {errors[:3]}")


def to_record(msg: Message) -> Record:
    """Convert a consumed (non-error) message into a `Record`."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise BrokerError("a consumed message lacks its topic, partition or offset")
    value = msg.value()
    key = msg.key()
    raw_headers = msg.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    headers = {name: v.encode() if isinstance(v, str) else (v or b"") for name, v in pairs}
    return Record(
        topic=topic, partition=partition, offset=offset,
        key=key.encode() if isinstance(key, str) else key,
        value=value.encode() if isinstance(value, str) else (value or b""),
        headers=headers,
    )


_SETTLING = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
})
"""Errors that mean "a partition's leadership is still settling" (new topic, broker start-up)."""


def _watermarks(consumer: Consumer, tp: TopicPartition, *, settle_s: float = 30.0) -> tuple[int, int]:
    """Low and high offsets of `tp`, retrying while its leadership settles."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _SETTLING) or time.monotonic() > deadline:
                raise BrokerError(f"offsets of {tp.topic}[{tp.partition}]: {exc}") from exc
            time.sleep(0.25)


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list[Record]:
    """
    Read every record currently in `topic`, from the beginning to the end of each partition.

    Uses no consumer group (manual assignment), so reading changes no offsets.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "safebus-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise BrokerError(f"topic {topic} does not exist")
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions]
        pending = set()
        for tp in partitions:
            low, high = _watermarks(consumer, tp)
            if high > low:
                pending.add(tp.partition)
        consumer.assign(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise BrokerError(f"reading {topic}: {error}")
            records.append(to_record(msg))
        if pending:
            raise BrokerError(f"timed out reading {topic}")
        return records
    finally:
        consumer.close()

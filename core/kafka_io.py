"""
Small confluent-kafka helpers shared by producers, consumers, the demo and tests.

Producers are idempotent with ``acks=all`` so a retry never writes a record
twice at the broker; readers use ``read_committed``.

Outages (docs/adr/0003, "Outages heal themselves"): every confluent-kafka
client is built with `RECONNECT`, and every consumer in a group with
`GROUP_TIMING`, the one place those settings live.  librdkafka reconnects by
itself to a restarted broker (whose address does not change, docs/adr/0002);
what it cannot do is make a failed flush succeed, so `ReliableProducer`
replaces its client after one, and the callers retry (the delivery loop) or
answer "not published" (the gateway) instead of exiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from safebus.errors import BrokerError
from safebus.kafka_security import READER_GROUP_PREFIX, client_config
from safebus.limits import PRODUCER_MAX_REQUEST_BYTES
from safebus.logs import get_logger
from safebus.records import Output, Record

__all__ = [
    "DELIVERY_BACKOFF_S",
    "GROUP_TIMING",
    "PRODUCE_TIMEOUT_S",
    "RECONNECT",
    "WEDGED_AFTER_S",
    "Publisher",
    "ReliableProducer",
    "backoff_delays",
    "iter_topic",
    "produce_all",
    "read_to_end",
    "read_topic",
    "reader_consumer",
    "reliable_producer",
    "to_record",
]

_log = get_logger("kafka")

RECONNECT: dict[str, object] = {
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 2000,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 2000,
    "socket.connection.setup.timeout.ms": 5000,
    "socket.keepalive.enable": True,
}
"""
How every client reconnects: from 100 ms doubling to at most 2 s between attempts (librdkafka's default
ceiling is 10 s), so a broker back from a restart is found within about 2 s; a connection attempt that
hangs is given up after 5 s instead of 30 s.  Retries never stop while the process runs; each failed
delivery or flush is logged by the caller.
"""
GROUP_TIMING: dict[str, object] = {
    "session.timeout.ms": 8000,
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 300_000,
}
"""
Consumer-group timing of every confluent-kafka worker (the Faust router has the same in
`safebus.processors.app.GROUP_TIMING`): a worker that died is declared dead after 8 s (librdkafka's default
is 45 s), so its partitions move to a live member that soon; heartbeats every second.  A batch whose
delivery keeps failing may take up to 5 minutes between polls before the member is replaced, after which
its records are redelivered (and deduplicated).  The broker's group.min.session.timeout.ms (6 s) is the floor.
"""
DELIVERY_BACKOFF_S = (0.5, 5.0)
"""A batch whose delivery failed is retried after 0.5 s, doubling up to 5 s between attempts, until it succeeds."""
WEDGED_AFTER_S = 20.0
"""A consumer that has made no progress this long after a broker error, while the broker answers, is replaced."""
PRODUCE_TIMEOUT_S = 30.0
"""How long `produce_all` waits for the broker to confirm a batch before calling it undelivered."""


def backoff_delays(first_s: float = DELIVERY_BACKOFF_S[0], max_s: float = DELIVERY_BACKOFF_S[1]) -> Iterator[float]:
    """Endless delays between retries: `first_s`, doubling, capped at `max_s`."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


def _producer_config(bootstrap: str, overrides: dict[str, object]) -> dict[str, object]:
    return client_config(
        bootstrap,
        **{"enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES,  # safebus.limits: below the broker's, above any dead letter
        "logger": logging.getLogger("safebus.librdkafka"),
        **RECONNECT,
        **overrides},
    )


class ReliableProducer:
    """
    An idempotent, acks=all producer that renews its librdkafka client after a failed flush.

    Why renew: after a flush that timed out (broker away) the old client may
    still hold the undelivered records, and its idempotence state may be
    fatally broken by their expiry; either would make the retry that follows
    write stale records or fail for good.  The old client's queue is purged and
    a fresh client takes its place, so the retry starts clean and the process
    never has to be restarted to publish again.
    """

    def __init__(self, bootstrap: str, **overrides: object) -> None:
        """Nothing connects until the first produce."""
        self._config = _producer_config(bootstrap, dict(overrides))
        self._producer = Producer(self._config)
        self.renewals = 0

    def produce_all(self, outputs: list[Output], *, timeout_s: float = PRODUCE_TIMEOUT_S) -> None:
        """Produce `outputs` and wait until the broker has every one; renew and raise BrokerError otherwise."""
        try:
            _produce_all(self._producer, outputs, timeout_s=timeout_s)
        except BrokerError as exc:
            self.renew(reason=str(exc)[:200])
            raise

    def renew(self, *, reason: str) -> None:
        """Drop the current client (and whatever it still queues) and start a fresh one."""
        old, self._producer = self._producer, Producer(self._config)
        self.renewals += 1
        _log.warning("producer_renewed", reason=reason, renewals=self.renewals)
        try:
            old.purge()
            old.flush(0)  # serve the purged records' delivery reports, so nothing waits on them
        except Exception as exc:  # noqa: BLE001 - the old client is being discarded whatever it says
            _log.warning("producer_purge_failed", error=type(exc).__name__)

    @property
    def client(self) -> Producer:
        """The librdkafka client in use now (another one after a renewal: do not keep it)."""
        return self._producer

    def flush(self, timeout_s: float = PRODUCE_TIMEOUT_S) -> int:
        """Wait for anything still queued; return how many records remain."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining


def reliable_producer(bootstrap: str, **overrides: object) -> ReliableProducer:
    """Return an idempotent, acks=all producer that survives broker restarts."""
    return ReliableProducer(bootstrap, **overrides)


@runtime_checkable
class Publisher(Protocol):
    """Anything that writes a list of outputs or raises (`ReliableProducer`, `safebus.fenced_producer`'s)."""

    def produce_all(self, outputs: list[Output], *, timeout_s: float = ...) -> None:
        """Write every one of `outputs`, or raise."""


def produce_all(producer: Producer | Publisher, outputs: list[Output], *,
                timeout_s: float = PRODUCE_TIMEOUT_S) -> None:
    """Produce `outputs` and wait until the broker has every one; raises BrokerError otherwise."""
    if isinstance(producer, Publisher):
        producer.produce_all(outputs, timeout_s=timeout_s)
    else:  # a librdkafka producer (or a stand-in with its produce and flush)
        _produce_all(producer, outputs, timeout_s=timeout_s)


def _produce_all(producer: Producer, outputs: list[Output], *, timeout_s: float) -> None:
    errors: list[str] = []

    def _on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        for output in outputs:
            producer.produce(output.topic, key=output.key, value=output.value, headers=list(output.headers),
                             on_delivery=_on_delivery)
    except (KafkaException, BufferError) as exc:  # a fatal client state or a queue full of undelivered records
        raise BrokerError(f"could not queue records: {exc}") from exc
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
    KafkaError._TIMED_OUT, KafkaError.OFFSET_NOT_AVAILABLE,
})
"""
Errors that mean "a partition's leadership is still settling" (new topic, broker start-up, or a new leader
after a broker died whose high watermark has not caught up yet: ``OFFSET_NOT_AVAILABLE``, not flagged retriable).
"""


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
    return list(iter_topic(bootstrap, topic, timeout_s=timeout_s))


def iter_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0, last_only: bool = False) -> Iterator[Record]:
    """
    Yield every record now in `topic` (as `read_topic`), streaming: a topic of a million records is never in memory.

    With `last_only`, only the last record of each partition (a log's head, such as the newest audit leaf).
    `timeout_s` bounds the time without progress.
    """
    consumer = Consumer(_reader_config(bootstrap))
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:  # no broker answered: the caller's outage, not a crash
            raise BrokerError(f"reading {topic}: {exc}") from exc
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise BrokerError(f"topic {topic} does not exist")
        bounds: dict[int, tuple[int, int]] = {}
        for partition in info.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, partition))
            if high > low:
                bounds[partition] = (low, high)
        if last_only:
            yield from _heads(consumer, topic, bounds, timeout_s=timeout_s)
        else:
            yield from read_to_end(consumer, topic, {p: OFFSET_BEGINNING for p in bounds}, timeout_s=timeout_s)
    finally:
        consumer.close()


def _heads(consumer: Consumer, topic: str, bounds: dict[int, tuple[int, int]], *,
           timeout_s: float) -> Iterator[Record]:
    """
    The last record of each partition in `bounds` (low, high).

    The last offset is not always a record: a transactional writer's commit
    marker follows each of its transactions, and an aborted transaction's
    records are never delivered.  So the tail is read over a window that grows
    (2, 32, 512 … offsets) until it holds a record or covers the partition.
    """
    window = 2
    todo = dict(bounds)
    while todo:
        last: dict[int, Record] = {}
        starts = {p: max(low, high - window) for p, (low, high) in todo.items()}
        for record in read_to_end(consumer, topic, starts, timeout_s=timeout_s):
            last[record.partition] = record
        yield from (last[p] for p in sorted(last))
        todo = {p: (low, high) for p, (low, high) in todo.items() if p not in last and high - window > low}
        window *= 16


def read_to_end(consumer: Consumer, topic: str, starts: dict[int, int], *, timeout_s: float = 30.0) -> Iterator[Record]:
    """
    The committed records of `topic` from each partition's start offset (in `starts`) to where it ended when asked.

    Why not wait for the end-of-partition event: librdkafka reports it only after a fetch that came back
    empty, which never happens on a topic written faster than the fetch wait (a busy audit topic, a
    standby following a busy leader), so a reader waiting for it reads for ever.  The end is the high
    watermark read first; a partition is done at that event, or once a record at or past the offset before
    that mark arrives (the last offset may be a transaction's commit marker, which is never delivered).
    Raises `BrokerError` after `timeout_s` without progress.
    """
    pending: dict[int, int] = {}
    for partition, start in starts.items():
        low, high = _watermarks(consumer, TopicPartition(topic, partition))
        if high > low and (start < 0 or start < high):
            pending[partition] = high
    if not pending:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.pop(msg.partition() or 0, None)
                continue
            raise BrokerError(f"reading {topic}: {error}")
        deadline = time.monotonic() + timeout_s
        record = to_record(msg)
        end = pending.get(record.partition)
        if end is None:
            continue  # a partition already read to its end: what came since is the next read's
        yield record
        if record.offset >= end - 1:
            del pending[record.partition]
    if pending:
        raise BrokerError(f"timed out reading {topic}")


def reader_consumer(bootstrap: str) -> Consumer:
    """A consumer that assigns partitions itself and never joins its group, reporting each partition's end."""
    return Consumer(_reader_config(bootstrap))


def _reader_config(bootstrap: str) -> dict[str, object]:
    return client_config(bootstrap, **{"group.id": READER_GROUP_PREFIX,  # assigned, never joined (see its note)
                                       "enable.auto.commit": False,
                                       "enable.partition.eof": True,
                                       "isolation.level": "read_committed"})

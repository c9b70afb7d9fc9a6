"""
A producer whose writes the broker refuses once another instance has taken over: the single writers' fence.

Why transactions: Kafka's transactional id is the broker's own fencing
mechanism.  Every instance of a single writer (the audit sequencer and its
standby) uses the same transactional id; `FencedProducer.begin` registers a
new epoch for it, which aborts whatever the previous holder left open and
makes every later write of the previous holder fail with ``PRODUCER_FENCED``.
So a zombie (a sequencer frozen past its lease that wakes up and carries on)
can never add a leaf after its successor has started: its transaction is
refused by the broker, it raises `WriterFenced`, and it steps down.

Each `produce_all` is one transaction: its records become visible to
``read_committed`` readers together or not at all.  A transaction that fails
for a reason other than the fence (the broker away) is aborted and raises
`BrokerError`; the caller repeats it, as it would any failed publish.

Beginning fences whoever held the id before, so only the holder of the
writer's lease (`safebus.leases`) may call `begin`.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from safebus.errors import BrokerError, SafebusError
from safebus.kafka_io import PRODUCE_TIMEOUT_S, RECONNECT
from safebus.kafka_security import client_config
from safebus.limits import PRODUCER_MAX_REQUEST_BYTES
from safebus.logs import get_logger
from safebus.records import Output

__all__ = ["FencedProducer", "WriterFenced"]

_log = get_logger("kafka.fenced")

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
"""What the broker answers a writer whose transactional id a newer instance has taken over."""


class WriterFenced(SafebusError):
    """Another instance of this single writer has taken over: this one's writes are refused by the broker."""


class FencedProducer:
    """A transactional producer: one transaction per `produce_all`, refused once a newer instance has begun."""

    def __init__(self, bootstrap: str, transactional_id: str, *, timeout_s: float = PRODUCE_TIMEOUT_S) -> None:
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self._producer: Producer | None = None
        self.may_begin: Callable[[], bool] | None = None
        """Asked before beginning again after a fatal error (the lease's `held`); never begins again without it."""
        self._fenced = False
        """Fenced: only an explicit `begin` (a new term as leader) may take the id again, never a retry."""

    @property
    def begun(self) -> bool:
        """Whether this instance holds the transactional id (until fenced or a fatal error)."""
        return self._producer is not None

    def begin(self) -> None:
        """Take over the transactional id, fencing every earlier instance (only the lease holder may)."""
        producer = Producer(client_config(self.bootstrap, **{
            "transactional.id": self.transactional_id, "enable.idempotence": True, "acks": "all",
            "transaction.timeout.ms": 60_000, "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES, **RECONNECT}))
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            raise BrokerError(f"cannot take over transactional id {self.transactional_id}: {exc.args[0]}") from exc
        self._producer = producer
        self._fenced = False
        _log.info("writer_began", transactional_id=self.transactional_id)

    def produce_all(self, outputs: list[Output], *, timeout_s: float | None = None) -> None:
        """Write `outputs` in one transaction; `WriterFenced` if a newer instance holds the id, else `BrokerError`."""
        if not outputs:
            return
        if self._producer is None:
            if self._fenced or self.may_begin is None or not self.may_begin():
                raise WriterFenced(f"the writer {self.transactional_id} has not begun, and may not")
            self.begin()
        producer = self._producer
        assert producer is not None
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            producer.begin_transaction()
            for output in outputs:
                producer.produce(output.topic, key=output.key, value=output.value, headers=list(output.headers))
                producer.poll(0)
            producer.commit_transaction(timeout)
        except KafkaException as exc:
            self._failed(producer, exc.args[0])
        except BufferError as exc:
            self._abort(producer)
            raise BrokerError(f"could not queue records: {exc}") from exc

    def _failed(self, producer: Producer, error: KafkaError) -> None:
        if error.code() in _FENCED:
            self._producer, self._fenced = None, True
            _log.warning("writer_fenced", transactional_id=self.transactional_id)
            raise WriterFenced(f"another instance has taken over {self.transactional_id}: this one may not write")
        if error.fatal():
            self._producer = None  # begun again by the caller, if it still holds the lease
            raise BrokerError(f"the writer {self.transactional_id} failed for good: {error}")
        self._abort(producer)
        raise BrokerError(f"transaction of {self.transactional_id} not committed: {error}")

    def _abort(self, producer: Producer) -> None:
        try:
            producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() in _FENCED:
                self._producer, self._fenced = None, True
                raise WriterFenced(f"another instance has taken over {self.transactional_id}") from exc
            self._producer = None  # its state is unknown: begin again
            _log.warning("writer_abort_failed", transactional_id=self.transactional_id, error=str(exc)[:200])

    def close(self) -> None:
        """Deliver nothing more; the id stays registered for the next instance to take over."""
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

"""
The delivery loop waits out a broker outage instead of exiting (docs/adr/0003, "Outages heal themselves").

The loop is driven here by a scripted consumer, because what is under test is
the loop's own decisions (retry, commit, replace) at moments a real broker
cannot be made to produce on cue; tests/integration/test_outages.py shows the
same behaviour against a real broker that is stopped and started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from structlog.testing import capture_logs

from safebus.consumers._delivery import run_batches
from safebus.errors import BrokerError
from safebus.kafka_io import ReliableProducer, backoff_delays, produce_all
from safebus.records import Output, Record


class _Message:
    """A consumed record, or an error event, as confluent-kafka's poll returns it."""

    def __init__(self, offset: int, error: KafkaError | None = None) -> None:
        self._offset = offset
        self._error = error

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"v{self._offset}".encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class _Consumer:
    """Hands out a scripted sequence of poll results, then nothing; records commits."""

    def __init__(self, script: list[_Message | str | None], *, assigned: bool = True, broker_answers: bool = True,
                 commit_fails: int = 0) -> None:
        self.script = list(script)
        self.on_lost: Callable[[object, list[object]], None] | None = None
        self.assigned = assigned
        self.broker_answers = broker_answers
        self.commit_fails = commit_fails
        self.commits = 0
        self.closed = threading.Event()
        self.subscribed: list[str] = []

    def subscribe(self, topics: list[str], on_lost: Callable[[object, list[object]], None] | None = None) -> None:
        self.subscribed = topics
        self.on_lost = on_lost

    def poll(self, timeout: float) -> _Message | None:
        if self.script:
            step = self.script.pop(0)
            if step == "lose-assignment":  # librdkafka serves the callback from poll, then returns nothing
                self.assigned = False
                assert self.on_lost is not None, "the loop must ask to hear of a lost assignment"
                self.on_lost(self, [object()])
                return None
            assert not isinstance(step, str)
            return step
        time.sleep(min(timeout, 0.01))
        return None

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        return []

    def commit(self, asynchronous: bool) -> None:
        if self.commit_fails:
            self.commit_fails -= 1
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        self.commits += 1

    def assignment(self) -> list[object]:
        return [object()] if self.assigned else []

    def position(self, partitions: list[object]) -> list[object]:
        if not self.broker_answers:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return []

    def list_topics(self, topic: str, timeout: float) -> object:
        if not self.broker_answers:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return object()

    def close(self) -> None:
        self.closed.set()


def _run(consumers: Callable[[], Any], deliver: Callable[[list[Record]], object], *, until: Callable[[], bool],
         idle: Callable[[], object] | None = None, wedged_after_s: float = 20.0, limit_s: float = 10.0) -> None:
    """Run the loop in a thread until `until()` holds (or `limit_s`), then stop it and wait for it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_batches, args=(consumers, ["t"], deliver, stop),
                              kwargs={"idle": idle, "wedged_after_s": wedged_after_s, "poll_s": 0.01}, daemon=True)
    thread.start()
    deadline = time.monotonic() + limit_s
    while not until() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the loop did not stop when asked"


def test_a_batch_whose_delivery_fails_is_delivered_again_and_committed_once() -> None:
    """The broker refuses twice, then accepts: same records redelivered, one commit, retries logged, no exit."""
    consumer = _Consumer([_Message(0), _Message(1)])
    attempts: list[list[int]] = []

    def deliver(records: list[Record]) -> None:
        attempts.append([r.offset for r in records])
        if len(attempts) <= 2:
            raise BrokerError("2 records undelivered; errors: ['Local: Message timed out']")

    with capture_logs() as logs:
        _run(lambda: consumer, deliver, until=lambda: consumer.commits >= 2)
    assert attempts == [[0], [0], [0], [1]]
    assert consumer.commits == 2
    retries = [entry for entry in logs if entry["event"] == "delivery_failed_retrying"]
    assert [(r["attempt"], r["retry_in_s"]) for r in retries] == [(1, 0.5), (2, 1.0)]
    assert any(entry["event"] == "delivery_recovered" and entry["attempts"] == 3 for entry in logs)


def test_stopping_during_a_retry_ends_the_loop_at_once_without_committing() -> None:
    """SIGTERM while the broker is away: the loop returns promptly and commits nothing it did not deliver."""
    consumer = _Consumer([_Message(0)])
    calls: list[int] = []

    def deliver(records: list[Record]) -> None:
        calls.append(1)
        raise BrokerError("undelivered")

    stop = threading.Event()
    thread = threading.Thread(target=run_batches, args=(lambda: consumer, ["t"], deliver, stop), daemon=True)
    thread.start()
    while not calls:
        time.sleep(0.01)
    started = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert consumer.commits == 0
    assert consumer.closed.is_set()


def test_a_failed_commit_is_not_the_end_of_the_worker() -> None:
    """A commit the broker could not take only means a redelivery later: the loop goes on to the next batch."""
    consumer = _Consumer([_Message(0), _Message(1)], commit_fails=1)
    delivered: list[int] = []
    with capture_logs() as logs:
        _run(lambda: consumer, lambda records: delivered.extend(r.offset for r in records),
             until=lambda: consumer.commits >= 1)
    assert delivered == [0, 1]
    assert consumer.commits == 1
    assert any(entry["event"] == "consume_error" and "commit failed" in entry["error"] for entry in logs)


def test_idle_work_that_fails_on_the_broker_is_tried_again() -> None:
    """A checkpoint or escalation due by time that cannot be published is logged and retried at the next idle."""
    consumer = _Consumer([])
    calls: list[int] = []

    def idle() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise BrokerError("checkpoint undelivered")

    with capture_logs() as logs:
        _run(lambda: consumer, lambda records: None, idle=idle, until=lambda: len(calls) >= 3)
    assert len(calls) >= 3
    assert [entry["event"] for entry in logs].count("idle_failed") == 2


def test_a_consumer_stuck_since_a_broker_error_is_replaced_once_the_broker_answers() -> None:
    """No progress for the wedge time after an error, broker reachable: a fresh consumer takes over."""
    stuck = _Consumer([_Message(-1, KafkaError(KafkaError._TRANSPORT))], assigned=False)
    fresh = _Consumer([_Message(0)])
    made = iter([stuck, fresh])
    delivered: list[int] = []
    with capture_logs() as logs:
        _run(lambda: next(made), lambda records: delivered.extend(r.offset for r in records),
             wedged_after_s=0.2, until=lambda: fresh.commits >= 1)
    assert delivered == [0]
    assert stuck.closed.wait(2), "the wedged consumer is closed (in the background)"
    assert fresh.subscribed == ["t"]
    assert [entry["event"] for entry in logs].count("consumer_replaced") == 1


def test_a_consumer_whose_assignment_was_lost_and_never_returned_is_replaced() -> None:
    """A session timeout during an outage, then a rejoin that never completes: a fresh consumer takes over."""
    lost = _Consumer([_Message(0), "lose-assignment"])
    fresh = _Consumer([_Message(1)])
    made = iter([lost, fresh])
    delivered: list[int] = []
    with capture_logs() as logs:
        _run(lambda: next(made), lambda records: delivered.extend(r.offset for r in records),
             wedged_after_s=0.2, until=lambda: fresh.commits >= 1)
    assert delivered == [0, 1]
    assert [entry["event"] for entry in logs].count("consumer_replaced") == 1


def test_a_consumer_is_not_replaced_while_the_broker_is_still_away() -> None:
    """Replacing a consumer cannot help while nobody answers: it is kept, and no clients pile up."""
    waiting = _Consumer([_Message(-1, KafkaError(KafkaError._ALL_BROKERS_DOWN))], assigned=False,
                        broker_answers=False)
    made: list[_Consumer] = []

    def consumers() -> _Consumer:
        made.append(waiting)
        return waiting

    with capture_logs() as logs:
        _run(consumers, lambda records: None, wedged_after_s=0.05, until=lambda: False, limit_s=0.5)
    assert len(made) == 1
    assert "consumer_replaced" not in [entry["event"] for entry in logs]


def test_a_producer_renews_its_client_after_a_failed_flush() -> None:
    """Nothing answers: the flush fails with BrokerError, and the next attempt starts on a fresh client."""
    producer = ReliableProducer("127.0.0.1:1", **{"message.timeout.ms": 500})
    first = producer.client
    with capture_logs() as logs, pytest.raises(BrokerError, match="undelivered"):
        produce_all(producer, [Output(topic="t", key=b"k", value=b"v")], timeout_s=1.0)
    assert producer.client is not first
    assert producer.renewals == 1
    assert [entry["event"] for entry in logs] == ["producer_renewed"]
    assert len(first) == 0, "the old client holds nothing that could be sent late"


def test_backoff_doubles_to_a_ceiling() -> None:
    """Retries start fast and never wait longer than the ceiling."""
    delays = backoff_delays(0.5, 5.0)
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]

"""The delivery loop shared by the inbox and queue workers (`safebus.consumers._delivery`), without a broker."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from safebus.consumers import _delivery
from safebus.consumers._delivery import DELIVER_STAGE, deliver_batch, refuse
from safebus.errors import BrokerError
from safebus.records import DLQ_REASON, DLQ_STAGE, Origin, Output, Record
from tests.conftest import KeepingProducer

DEADLETTER = "t.deadletter"


def _records(*values: bytes) -> list[Record]:
    return [Record(topic="t.egress.school", partition=0, offset=i, key=b"k", value=v, headers={})
            for i, v in enumerate(values)]


def _admit(raw: bytes, origin: Origin) -> str | Output:
    """Admits ``good…`` records, refuses ``bad…`` ones with a reason, and fails on ``boom``."""
    if raw == b"boom":
        raise ValueError("a bug in one record's handling")
    if raw.startswith(b"bad"):
        return refuse(raw, origin, reason="misaddressed", detail="", deadletter_topic=DEADLETTER)
    return raw.decode()


class _Store:
    """An idempotent store: counts what is new, as the inbox and queue stores do."""

    def __init__(self) -> None:
        self.kept: set[str] = set()

    def store_many(self, items: list[str]) -> int:
        new = set(items) - self.kept
        self.kept |= new
        return len(new)


def _reasons(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(dict(o.headers)[DLQ_REASON].decode(), dict(o.headers)[DLQ_STAGE].decode()) for o in outputs]


def test_a_good_record_is_stored_once_and_its_redelivery_adds_nothing() -> None:
    store, producer = _Store(), KeepingProducer()
    records = _records(b"good-1", b"good-2")
    assert deliver_batch(records, _admit, store.store_many, producer, what="alerts", deadletter_topic=DEADLETTER) == 2
    assert deliver_batch(records, _admit, store.store_many, producer, what="alerts", deadletter_topic=DEADLETTER) == 0
    assert store.kept == {"good-1", "good-2"}
    assert producer.sent == []


def test_a_refused_record_is_one_dead_letter_with_its_reason_and_the_rest_are_stored() -> None:
    store, producer = _Store(), KeepingProducer()
    new = deliver_batch(_records(b"good-1", b"bad-1"), _admit, store.store_many, producer, what="alerts",
                        deadletter_topic=DEADLETTER)
    assert new == 1
    assert store.kept == {"good-1"}
    assert _reasons(producer.sent) == [("misaddressed", DELIVER_STAGE)]
    assert [o.topic for o in producer.sent] == [DEADLETTER]


def test_a_record_whose_handling_raises_is_one_internal_error_dead_letter_not_a_stopped_consumer() -> None:
    store, producer = _Store(), KeepingProducer()
    assert deliver_batch(_records(b"boom", b"good-1"), _admit, store.store_many, producer, what="alerts",
                         deadletter_topic=DEADLETTER) == 1
    assert _reasons(producer.sent) == [("internal-error", DELIVER_STAGE)]
    assert store.kept == {"good-1"}


@pytest.fixture
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without waiting, so an outage costs the test nothing."""
    def delays() -> Iterator[float]:
        return itertools.repeat(0.0)
    monkeypatch.setattr(_delivery, "backoff_delays", delays)


@pytest.mark.usefixtures("no_pauses")
def test_a_broker_outage_during_delivery_is_retried_until_it_succeeds_not_dropped() -> None:
    attempts: list[int] = []

    def deliver(records: list[Record]) -> None:
        attempts.append(len(records))
        if len(attempts) < 3:
            raise BrokerError("dead letters not confirmed")

    assert _delivery._deliver_until_done(deliver, _records(b"good-1"), threading.Event()) is True
    assert attempts == [1, 1, 1], "the same batch, delivered again after each failure"


@pytest.mark.usefixtures("no_pauses")
def test_a_worker_stopped_during_an_outage_does_not_report_the_batch_done() -> None:
    stop = threading.Event()

    def deliver(records: list[Record]) -> None:
        stop.set()
        raise BrokerError("broker away")

    assert _delivery._deliver_until_done(deliver, _records(b"good-1"), stop) is False, \
        "a batch not delivered must not be committed"

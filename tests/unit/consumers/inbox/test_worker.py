"""The school inbox worker without a broker: what it stores once, and what becomes exactly one dead letter."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from safebus.app.wiring import Settings, build_handler, build_inbox_worker, build_police_publisher
from safebus.consumers.inbox.worker import InboxWorker
from safebus.producers.synthetic import IncidentFactory
from safebus.records import DLQ_REASON, DLQ_STAGE, Origin, Output, Record
from safebus.schemas.audit import Delivered
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, KeepingProducer, Partnership

NAMES = TopicNames(prefix="t")


@pytest.fixture
def settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=NAMES)


@pytest.fixture
def facts() -> list[Output]:
    return []


@pytest.fixture
def producer() -> KeepingProducer:
    return KeepingProducer()


@pytest.fixture
def worker(settings: Settings, facts: list[Output], producer: KeepingProducer) -> InboxWorker:
    """A worker that never connects: dead letters go to `producer`, delivery facts to `facts`."""
    built = build_inbox_worker(settings, clock=lambda: FIXED_NOW)
    built.publish_audit = facts.extend
    built._producer = producer
    return built


@pytest.fixture
def alert(settings: Settings, worker: InboxWorker) -> Record:
    """The router's alert for a hosted school, as the worker would read it back from the school's topic."""
    publisher = build_police_publisher(settings, clock=lambda: FIXED_NOW)
    handler = build_handler(settings, clock=lambda: FIXED_NOW)
    for seed in range(50):
        incident = IncidentFactory(random.Random(seed), now=FIXED_NOW - timedelta(hours=1)).incident()
        record = publisher.seal_incident(incident)
        outputs = handler.handle(record.value, Origin(topic=record.topic, partition=0, offset=1, key=record.key))
        for o in outputs:
            if o.topic in worker.schools:
                return Record(topic=o.topic, partition=0, offset=7, key=o.key, value=o.value, headers=dict(o.headers))
    raise AssertionError("no synthetic incident reached a hosted school")


def _reasons(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(dict(o.headers)[DLQ_REASON].decode(), dict(o.headers)[DLQ_STAGE].decode()) for o in outputs]


def test_an_alert_is_stored_once_and_its_replay_is_not_doubled(
    worker: InboxWorker, alert: Record, facts: list[Output], producer: KeepingProducer,
) -> None:
    assert worker.deliver([alert]) == 1
    assert worker.deliver([alert]) == 0, "a redelivered batch adds nothing"
    assert producer.sent == []
    delivered = [Delivered.model_validate_json(o.value) for o in facts]
    assert len({d.event_id for d in delivered}) == 1, "a redelivery is the same audit fact, logged once"


def test_an_undecryptable_record_is_exactly_one_dead_letter(
    worker: InboxWorker, alert: Record, producer: KeepingProducer,
) -> None:
    garbage = Record(topic=alert.topic, partition=0, offset=8, key=alert.key, value=b"not an envelope", headers={})
    assert worker.deliver([garbage]) == 0
    assert len(producer.sent) == 1
    [(reason, stage)] = _reasons(producer.sent)
    assert stage == "deliver"
    assert reason != "internal-error", "an undecryptable record is refused for what it is, not as a bug"
    assert producer.sent[0].topic == NAMES.deadletter


def test_an_alert_on_a_topic_the_worker_does_not_host_is_misaddressed(
    worker: InboxWorker, alert: Record, producer: KeepingProducer,
) -> None:
    stray = Record(topic=NAMES.egress("no-such-school"), partition=0, offset=9, key=alert.key, value=alert.value,
                   headers={})
    assert worker.deliver([stray]) == 0
    assert _reasons(producer.sent) == [("misaddressed", "deliver")]

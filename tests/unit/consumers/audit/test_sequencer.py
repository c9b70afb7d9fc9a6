"""
The audit sequencer, directly (issue 13, item 7): what reaches the log, once, and what is refused, with why.

In-process: a real ledger in a temporary partnership and real signed facts;
only the broker is left out, by a producer that keeps the dead letters it is
given (the sequencer's broker path is covered by tests/integration/test_audit_log.py).
"""

from __future__ import annotations

import pytest

from safebus.app.wiring import Settings, build_audit_sequencer
from safebus.consumers.audit.facts import delivered_fact
from safebus.consumers.audit.leaf_records import leaf_from_record
from safebus.consumers.audit.sequencer import AuditSequencer
from safebus.errors import BrokerError
from safebus.fact_signing import FactSigner
from safebus.records import DLQ_REASON, Output, Record
from safebus.schemas.audit import DeliveryChannel
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, KeepingProducer, Partnership


@pytest.fixture
def settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames(prefix="t"))


@pytest.fixture
def sequencer(settings: Settings) -> tuple[AuditSequencer, KeepingProducer]:
    built = build_audit_sequencer(settings, clock=lambda: FIXED_NOW)
    producer = KeepingProducer()
    built._producer = producer
    built._head = lambda _topic: None  # no broker: the leaves and checkpoint topics start empty
    return built, producer


def _delivered(settings: Settings, partnership: Partnership, *, n: int, offset: int) -> Record:
    """A delivery fact signed by the router, as the record the sequencer reads."""
    fact = FactSigner(keys=partnership.router, audit_topic=settings.names.audit).sign(delivered_fact(
        output_id=f"9a3c2f1e-0000-4000-8000-{n:012d}", recipient="school-900101",
        channel=DeliveryChannel.SCHOOL_INBOX, subjects=(), at=FIXED_NOW, audit_topic=settings.names.audit))
    return Record(topic=fact.topic, partition=0, offset=offset, key=fact.key, value=fact.value,
                  headers=dict(fact.headers))


def _dead_letters(producer: KeepingProducer) -> list[Output]:
    """What was dead-lettered (the producer also carries the signed checkpoints)."""
    return [o for o in producer.sent if o.topic.endswith(".deadletter")]


def _reasons(producer: KeepingProducer) -> list[bytes]:
    return [dict(o.headers)[DLQ_REASON] for o in _dead_letters(producer)]


def test_a_signed_fact_becomes_one_leaf_and_its_replay_adds_none(
        settings: Settings, partnership: Partnership, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """A crash before the commit redelivers the batch: each fact is still in the log exactly once."""
    seq, producer = sequencer
    size = seq.ledger.size
    first, second = _delivered(settings, partnership, n=1, offset=10), _delivered(settings, partnership, n=2, offset=11)
    assert len(seq.sequence([first, second])) == 2
    assert seq.ledger.size == size + 2
    assert seq.sequence([first, second]) == [], "a replayed batch appended again"
    assert seq.ledger.size == size + 2
    assert _dead_letters(producer) == []


def test_an_unsigned_fact_is_refused_with_its_reason_and_the_batch_goes_on(
        settings: Settings, partnership: Partnership, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """Anyone can write to the audit topic; only what a partnership component signed becomes a leaf."""
    seq, producer = sequencer
    signed = _delivered(settings, partnership, n=3, offset=20)
    unsigned = Record(topic=signed.topic, partition=0, offset=21, key=signed.key, value=signed.value, headers={})
    size = seq.ledger.size
    assert len(seq.sequence([unsigned, _delivered(settings, partnership, n=4, offset=22)])) == 1
    assert seq.ledger.size == size + 1
    assert _reasons(producer) == [b"unsigned-fact"]


def test_a_fact_changed_after_signing_is_refused_as_a_bad_signature(
        settings: Settings, partnership: Partnership, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """The signature covers the value's exact bytes: one changed byte and the fact is not the router's."""
    seq, producer = sequencer
    signed = _delivered(settings, partnership, n=5, offset=30)
    changed = Record(topic=signed.topic, partition=0, offset=30, key=signed.key,
                     value=signed.value.replace(b"school-900101", b"school-900102"), headers=signed.headers)
    size = seq.ledger.size
    assert seq.sequence([changed]) == []
    assert seq.ledger.size == size
    assert _reasons(producer) == [b"bad-fact-signature"]


def test_bytes_that_are_no_fact_are_one_dead_letter_each(
        settings: Settings, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """Hostile bytes on the audit topic are refused one by one, each with a reason; nothing stops the log."""
    seq, producer = sequencer
    junk = [Record(topic=settings.names.audit, partition=0, offset=n, key=None, value=value, headers={})
            for n, value in enumerate([b"", b"[" * 5000, b"\xff\xfe", b'{"event_type": 3}'])]
    size = seq.ledger.size
    assert seq.sequence(junk) == []
    assert seq.ledger.size == size
    assert _reasons(producer) == [b"unsigned-fact"] * len(junk)


class _FailingOnce(KeepingProducer):
    """A broker that is away for the first publish of the leaves topic, then back."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def produce_all(self, outputs: list[Output], *, timeout_s: float = 0) -> None:
        if not self.failed and any(o.topic.endswith(".audit.leaves") for o in outputs):
            self.failed = True
            raise BrokerError("the broker is away")
        super().produce_all(outputs, timeout_s=timeout_s)


def test_every_leaf_reaches_the_leaves_topic_in_order_before_its_checkpoint_even_after_an_outage(
        settings: Settings, partnership: Partnership, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """A rebuild needs every leaf, once in place order; no checkpoint may cover a leaf the topic lacks."""
    seq, _ = sequencer
    producer = _FailingOnce()
    seq._producer = producer
    before = seq.ledger.size
    with pytest.raises(BrokerError):
        seq.sequence([_delivered(settings, partnership, n=n, offset=40 + n) for n in range(10, 13)])
    assert seq.ledger.size == before + 3, "stored before the outage met the publish"
    seq.sequence([_delivered(settings, partnership, n=13, offset=53)])  # the redelivered batch, and one more
    seq.checkpoint_if_due(force=True)
    topics = [o.topic.rsplit(".", 2)[-2:] for o in producer.sent]
    leaves = [leaf_from_record(Record(topic=o.topic, partition=0, offset=n, key=o.key, value=o.value, headers={}))
              for n, o in enumerate(producer.sent) if o.topic == settings.names.audit_leaves]
    assert [leaf.index for leaf in leaves] == list(range(0, before + 4))
    assert [leaf.fact_id for leaf in leaves] == [leaf.fact_id for leaf in seq.ledger.leaves()]
    assert topics.index(["audit", "checkpoints"]) > max(i for i, t in enumerate(topics) if t == ["audit", "leaves"])


def test_a_checkpoint_an_export_signed_is_published_too_in_size_order(
        settings: Settings, partnership: Partnership, sequencer: tuple[AuditSequencer, KeepingProducer]) -> None:
    """``audit export`` signs a checkpoint into the live ledger; the bus must hold it too, or a rebuild lacks it."""
    seq, producer = sequencer
    seq.sequence([_delivered(settings, partnership, n=20, offset=60)])
    seq.checkpoint_if_due(force=True)
    seq.sequence([_delivered(settings, partnership, n=21, offset=61)])
    by_export = seq.ledger.make_checkpoint(now=FIXED_NOW)  # as export_lines does, in another process
    assert by_export is not None
    seq.sequence([_delivered(settings, partnership, n=22, offset=62)])
    seq.checkpoint_if_due(force=True)
    published = [int(o.key) for o in producer.sent if o.topic == settings.names.checkpoints]
    assert published == [c.size for c in seq.ledger.checkpoints()]
    assert by_export.size in published

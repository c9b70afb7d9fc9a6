"""
Every worker's per-record handler, in process, with a record of what it did for each input record.

The unit tests (``tests/unit/behaviours/test_hostile_records.py``) and the benchmark
(``bench/fuzz.py``) drive the same handlers the running workers use — the
router's `IncidentHandler.handle`, the inbox and queue workers' ``deliver``,
the sequencer's ``sequence`` and the monitor's ``observe`` — with a
`MemoryProducer` in place of the broker.  The memory producer refuses, as
librdkafka does, any record larger than our producers' maximum request, so an
oversized dead letter fails here exactly as it failed on the bus.

`Target.run` hands a batch to its worker and says, per input record, what
became of it:

- ``dead-lettered``: exactly one dead letter names its topic/partition/offset;
- ``output``: no dead letter, and the worker took it (stored, appended,
  routed, applied, or — for the monitor — left to the sequencer as not a fact);
- ``unaccounted``: anything else (two dead letters, none and no output).

An exception out of the handler is counted in `Outcome.exits`: on the bus it
would have stopped the worker.  The accepted outcome is zero exits and zero
unaccounted records.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException

from bench.fuzz_corpus import Hostile, Resigner, Sealer, hostile_records
from safebus.app.encompass_wiring import open_monitor
from safebus.app.queue_wiring import build_queue_worker
from safebus.app.wiring import (
    Settings,
    build_audit_sequencer,
    build_handler,
    build_inbox_worker,
    build_police_publisher,
    directory_source,
    key_service_for,
)
from safebus.consumers.encompass.escalation import MonitorWorker
from safebus.directory import Agency, Directory, PartnershipStore
from safebus.envelope import open_envelope, peek_header, seal
from safebus.fact_signing import FactPublisher, FactSigner, Service, fact_signer
from safebus.keys import PrivateKeys
from safebus.limits import PRODUCER_MAX_REQUEST_BYTES
from safebus.processors.handler import IncidentHandler
from safebus.producers.synthetic import IncidentFactory, create_partnership
from safebus.records import (
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGIN_TOPIC,
    DLQ_REASON,
    DLQ_STAGE,
    Origin,
    Output,
    Record,
    dead_letter,
)
from safebus.topics import TopicNames

__all__ = ["MemoryProducer", "Outcome", "Target", "Targets", "build_targets", "output_size", "to_record"]

DEAD_LETTER_NUMERIC = frozenset({DLQ_ORIGIN_PARTITION, DLQ_ORIGIN_OFFSET})


def output_size(output: Output) -> int:
    """What a producer counts against its maximum request: key, value and headers (framing aside)."""
    return len(output.key) + len(output.value) + sum(len(n.encode()) + len(v) for n, v in output.headers)


class MemoryProducer:
    """
    Stands in for ``confluent_kafka.Producer`` in process: keeps what is produced, refuses what is too large.

    The size rule is our producers' (`PRODUCER_MAX_REQUEST_BYTES`), raised the
    way librdkafka raises it, so a handler that would exceed it fails here too.
    """

    def __init__(self) -> None:
        self.produced: list[Output] = []

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None,
                headers: Sequence[tuple[str, bytes]] | None = None,
                on_delivery: Callable[[KafkaError | None, object], None] | None = None) -> None:
        """Keep the record (or raise ``MSG_SIZE_TOO_LARGE``) and report it delivered."""
        output = Output(topic=topic, key=key or b"", value=value or b"", headers=tuple(headers or ()))
        if output_size(output) > PRODUCER_MAX_REQUEST_BYTES:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append(output)
        if on_delivery is not None:
            on_delivery(None, None)

    def flush(self, timeout: float | None = None) -> int:
        """Nothing is ever pending."""
        return 0

    def take(self) -> list[Output]:
        """What was produced since the last call."""
        taken, self.produced = self.produced, []
        return taken


@dataclass
class Outcome:
    """What became of a run's records, by outcome and by kind of attack."""

    records: int = 0
    dead_lettered: int = 0
    output: int = 0
    unaccounted: int = 0
    exits: int = 0
    oversized_outputs: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    """The first few unaccounted kinds or exits, for a failure message."""

    def add(self, other: Outcome) -> None:
        """Fold `other` into this outcome."""
        self.records += other.records
        self.dead_lettered += other.dead_lettered
        self.output += other.output
        self.unaccounted += other.unaccounted
        self.exits += other.exits
        self.oversized_outputs += other.oversized_outputs
        self.reasons.update(other.reasons)
        self.failures.extend(other.failures[: max(0, 20 - len(self.failures))])

    def as_dict(self) -> dict[str, object]:
        """The numbers, for JSON."""
        return {"records": self.records, "dead_lettered": self.dead_lettered, "output": self.output,
                "unaccounted": self.unaccounted, "exits": self.exits, "oversized_outputs": self.oversized_outputs,
                "reasons": dict(self.reasons.most_common())}


def to_record(hostile: Hostile, *, topic: str, offset: int, partition: int = 0) -> Record:
    """The record a worker would read for `hostile` on `topic` at `offset`."""
    return Record(topic=topic, partition=partition, offset=offset, key=hostile.key, value=hostile.value,
                  headers=dict(hostile.headers))


@dataclass(kw_only=True)
class Target:
    """One worker's input: a valid template record, how to break it, and its handler."""

    name: str
    topic: str
    template: Hostile
    deadletter: str
    handle: Callable[[list[Record]], list[Output]]
    """Hands a batch to the worker; returns everything it produced (raises what the worker would raise)."""
    numeric: frozenset[str] = frozenset()
    sealer: Sealer | None = None
    plaintext: bytes | None = None
    resign: Resigner | None = None

    def corpus(self, rng: random.Random) -> list[Hostile]:
        """The whole fixed hostile corpus against this input."""
        return list(hostile_records(self.template.value, self.template.headers, rng=rng, numeric=self.numeric,
                                    sealer=self.sealer, plaintext=self.plaintext, resign=self.resign))

    def run(self, records: list[Record], *, kinds: Sequence[str] | None = None) -> Outcome:
        """Hand `records` to the worker as one batch and account for each."""
        outcome = Outcome(records=len(records))
        try:
            produced = self.handle(records)
        except Exception as exc:  # noqa: BLE001 - this is what the harness measures
            outcome.exits += 1
            outcome.unaccounted += len(records)
            outcome.failures.append(f"{self.name} raised {type(exc).__name__} on {kinds[:3] if kinds else '?'}")
            return outcome
        outcome.oversized_outputs = sum(output_size(o) > PRODUCER_MAX_REQUEST_BYTES for o in produced)
        letters: Counter[tuple[str, str, str]] = Counter()
        for output in produced:
            if output.topic != self.deadletter:
                continue
            headers = dict(output.headers)
            letters[(headers.get(DLQ_ORIGIN_TOPIC, b"").decode(), headers.get(DLQ_ORIGIN_PARTITION, b"").decode(),
                     headers.get(DLQ_ORIGIN_OFFSET, b"").decode())] += 1
            stage, reason = headers.get(DLQ_STAGE, b"?").decode(), headers.get(DLQ_REASON, b"?").decode()
            outcome.reasons[f"{stage}/{reason}"] += 1
        for index, record in enumerate(records):
            count = letters.get((record.topic, str(record.partition), str(record.offset)), 0)
            if count == 1:
                outcome.dead_lettered += 1
            elif count == 0:
                outcome.output += 1
            else:
                outcome.unaccounted += 1
                outcome.failures.append(f"{self.name}: {count} dead letters for {kinds[index] if kinds else '?'}")
        return outcome


@dataclass(kw_only=True)
class Targets:
    """Every worker's target, and the pieces a caller may want (settings, the good records)."""

    settings: Settings
    targets: dict[str, Target]
    good: dict[str, Callable[[], Hostile]]
    """A fresh valid record per target (the router refuses a repeated event id, so each is new)."""


def _now() -> datetime:
    return datetime.now(UTC)


def build_targets(state_dir: Path, *, clock: Callable[[], datetime] = _now, seed: int = 11,
                  bootstrap: str = "127.0.0.1:1", prefix: str = "fz") -> Targets:
    """
    A fresh synthetic partnership in `state_dir` and every worker built on it, with memory producers.

    With the default `bootstrap` nothing connects; the real-broker test passes
    its broker only to reuse the templates and sealers.
    """
    store = PartnershipStore(state_dir)
    create_partnership(store)
    settings = Settings(state_dir=state_dir, bootstrap=bootstrap, names=TopicNames(prefix=prefix))
    names = settings.names
    factory = IncidentFactory(random.Random(seed), now=clock())
    publisher = build_police_publisher(settings, clock=clock)
    handler = build_handler(settings, clock=clock)
    directory = store.load_directory()
    router = store.private_keys(directory.router().id)

    def fresh_incident() -> Output:
        return publisher.seal_incident(factory.incident("schools"))

    incident = fresh_incident()
    routed = handler.handle(incident.value, Origin(topic=incident.topic, partition=0, offset=0, key=incident.key))
    share = next(o for o in routed if o.topic.endswith(".encompass-notification"))
    # An Operation Encompass decision that shares: the fact the monitor tracks (the sequencer takes any).
    decision = next(o for o in routed if o.topic == names.audit and b'"operation-encompass"' in o.value
                    and b'"shared"' in o.value)

    targets: dict[str, Target] = {}
    good: dict[str, Callable[[], Hostile]] = {}

    # The router.
    def route(records: list[Record]) -> list[Output]:
        outputs: list[Output] = []
        with handler.batch():
            for record in records:
                outputs.extend(handler.handle(record.value, Origin(topic=record.topic, partition=record.partition,
                                                                   offset=record.offset, key=record.key)))
        return outputs

    plaintext = _plaintext(handler, incident)
    targets["router"] = Target(name="router", topic=incident.topic, deadletter=names.deadletter, handle=route,
                               template=Hostile(kind="good", value=incident.value, key=incident.key,
                                                headers=dict(incident.headers)),
                               sealer=_sealer(incident, publisher.agency, directory.router(), clock),
                               plaintext=plaintext)
    good["router"] = lambda: _hostile(fresh_incident())

    # The school inbox.
    inbox = build_inbox_worker(settings, clock=clock)
    inbox_producer = MemoryProducer()
    inbox._producer = inbox_producer  # type: ignore[assignment]
    inbox.publish_audit = FactPublisher(fact_signer(store, Service.INBOX_WORKER, audit_topic=names.audit),
                                        inbox_producer)  # type: ignore[arg-type]

    def deliver(records: list[Record]) -> list[Output]:
        inbox.deliver(records)
        return inbox_producer.take()

    school = _recipient(share, directory)
    targets["inbox"] = Target(name="inbox", topic=share.topic, deadletter=names.deadletter, handle=deliver,
                              template=_hostile(share), sealer=_sealer(share, router, school, clock),
                              plaintext=_opened(share.value, store.keyring(school.id), directory, settings))

    def fresh_share() -> Hostile:
        for _ in range(50):
            found = next((o for o in handler.handle(*_args(fresh_incident())) if o.topic == share.topic), None)
            if found is not None:
                return _hostile(found)
        raise AssertionError("no synthetic incident led to an alert for the template's school")

    good["inbox"] = fresh_share

    # The referral queues.
    queues = build_queue_worker(settings, clock=clock)
    queue_producer = MemoryProducer()
    queues._producer = queue_producer  # type: ignore[assignment]
    queues.publish_audit = FactPublisher(fact_signer(store, Service.QUEUE_WORKER, audit_topic=names.audit),
                                         queue_producer)  # type: ignore[arg-type]

    def queue(records: list[Record]) -> list[Output]:
        queues.deliver(records)
        return queue_producer.take()

    def fresh_referral() -> Output:
        for _ in range(50):
            outputs = handler.handle(*_args(fresh_incident()))
            found = next((o for o in outputs if o.topic in queues.recipients), None)
            if found is not None:
                return found
        raise AssertionError("no synthetic incident led to a referral")

    referral = fresh_referral()
    agency = _recipient(referral, directory)
    targets["queues"] = Target(name="queues", topic=referral.topic, deadletter=names.deadletter, handle=queue,
                               template=_hostile(referral), sealer=_sealer(referral, router, agency, clock),
                               plaintext=_opened(referral.value, store.keyring(agency.id), directory, settings))
    good["queues"] = lambda: _hostile(fresh_referral())

    # The audit sequencer: the audit topic, the dead-letter topic and the directory.
    sequencer = build_audit_sequencer(settings, clock=clock)
    sequencer_producer = MemoryProducer()
    sequencer._producer = sequencer_producer  # type: ignore[assignment]
    sequencer._head = lambda _topic: None  # no broker: the leaves and checkpoint topics start empty

    def sequence(records: list[Record]) -> list[Output]:
        sequencer.sequence(records)
        return sequencer_producer.take()

    router_facts = FactSigner(keys=router, audit_topic=names.audit)

    def resign(value: bytes) -> dict[str, bytes]:
        return dict(router_facts.sign(Output(topic=names.audit, key=b"k", value=value)).headers)

    targets["sequencer-audit"] = Target(name="sequencer-audit", topic=names.audit, deadletter=names.deadletter,
                                        handle=sequence, template=_hostile(decision), resign=resign)
    good["sequencer-audit"] = lambda: _hostile(next(o for o in handler.handle(*_args(fresh_incident()))
                                                    if o.topic == names.audit))
    letter = dead_letter(raw=b"not an envelope", origin=Origin(topic=incident.topic, partition=0, offset=99),
                         stage="verify", reason="malformed", detail="", topic=names.deadletter)
    targets["sequencer-deadletter"] = Target(name="sequencer-deadletter", topic=names.deadletter,
                                             deadletter=names.deadletter, handle=sequence,
                                             template=_hostile(letter), numeric=DEAD_LETTER_NUMERIC)
    offsets = iter(range(10_000, 10**9))
    good["sequencer-deadletter"] = lambda: _hostile(dead_letter(
        raw=b"x", origin=Origin(topic=incident.topic, partition=0, offset=next(offsets)), stage="verify",
        reason="malformed", detail="", topic=names.deadletter))
    entry = store.signed_entries()[0].model_dump_json().encode()
    targets["sequencer-directory"] = Target(name="sequencer-directory", topic=names.agencies,
                                            deadletter=names.deadletter, handle=sequence,
                                            template=Hostile(kind="good", value=entry, key=b"k"))
    good["sequencer-directory"] = lambda: Hostile(kind="good", value=entry, key=b"k")

    # The Encompass deadline monitor.
    monitor_producer = MemoryProducer()
    monitor = MonitorWorker(
        bootstrap=bootstrap, names=names, clock=clock, notices=None,
        monitor=open_monitor(settings), directory=directory_source(store, clock=clock),
        facts=FactPublisher(fact_signer(store, Service.DEADLINE_MONITOR, audit_topic=names.audit),
                            monitor_producer),  # type: ignore[arg-type]
    )

    def observe(records: list[Record]) -> list[Output]:
        monitor.observe(records)
        return monitor_producer.take()

    targets["monitor"] = Target(name="monitor", topic=names.audit, deadletter=names.deadletter, handle=observe,
                                template=_hostile(decision), resign=resign)
    good["monitor"] = good["sequencer-audit"]
    return Targets(settings=settings, targets=targets, good=good)


def _recipient(output: Output, directory: Directory) -> Agency:
    header = peek_header(output.value)
    assert header is not None
    found = directory.get(header["recipient"])
    assert found is not None
    return found


def _sealer(template: Output, sender: PrivateKeys, recipient: Agency, clock: Callable[[], datetime]) -> Sealer:
    """Seals any plaintext as `template` was sealed (same type, topic, sender, recipient), with a fresh id."""
    header = peek_header(template.value)
    assert header is not None

    def sealer(plaintext: bytes) -> bytes:
        return seal(plaintext, sender=sender, recipient=recipient.public_keys(), event_id=str(uuid.uuid4()),
                    event_type=header["event_type"], schema_id=header["schema_id"],
                    schema_version=header["schema_version"], topic=template.topic, now=clock())

    return sealer


def _args(output: Output) -> tuple[bytes, Origin]:
    return output.value, Origin(topic=output.topic, partition=0, offset=0, key=output.key)


def _hostile(output: Output) -> Hostile:
    return Hostile(kind="good", value=output.value, key=output.key, headers=dict(output.headers))


def _plaintext(handler: IncidentHandler, incident: Output) -> bytes:
    opened = open_envelope(incident.value, recipient=handler.keyring, senders=handler.directory(),
                           subject_keys=handler.subject_keys.lookup)
    return opened.plaintext


def _opened(value: bytes, keyring: list[PrivateKeys], directory: Directory, settings: Settings) -> bytes:
    return open_envelope(value, recipient=keyring, senders=directory,
                         subject_keys=key_service_for(settings.state_dir).lookup).plaintext

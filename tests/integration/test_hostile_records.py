"""
On a real broker: thousands of hostile records into every worker's input while the workers run.

The router, the school inbox, the referral queues, the audit sequencer and the
Encompass monitor run as their own processes (``python -m safebus …``).  The
test writes the fixed hostile corpus (`bench.fuzz_corpus`) with a plain Kafka
client — as anyone with access to a topic could — to the ingress, school
egress, referral, audit, dead-letter and directory topics: about 4,300 records,
a few dozen of them a megabyte, a dead letter with a partition of "abc", 400 KB
of ``[``.  Then one good incident.  It asserts that:

- no worker exits;
- every hostile record is accounted for by the worker that reads it: exactly
  one dead letter naming its topic, partition and offset (with that worker's
  stage), or its normal output (stored, appended to the log);
- the good incident is still routed, delivered to the school's inbox and the
  referral queue, appended to the audit log and tracked by the monitor.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from bench.fuzz_corpus import Hostile
from bench.fuzz_harness import Targets, build_targets
from safebus.app.encompass_wiring import open_monitor
from safebus.app.queue_wiring import queue_path
from safebus.app.wiring import Settings, open_ledger, router_sealed_reader, topics_for
from safebus.bounded_json import JsonRefused, loads_object
from safebus.consumers.audit.facts import NotAFact, fact_from_dead_letter, fact_from_directory_record
from safebus.consumers.audit.ledger import AuditLedger
from safebus.consumers.audit.log import read_facts
from safebus.consumers.audit.sequencer import GROUP_ID as SEQUENCER_GROUP
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.inbox.store import InboxStore
from safebus.consumers.queues.store import QueueStore
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.envelope import Opened, peek_header
from safebus.kafka_security import client_config
from safebus.limits import BROKER_MESSAGE_MAX_BYTES
from safebus.producers.synthetic import IncidentFactory
from safebus.records import (
    DLQ_ID,
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGIN_TOPIC,
    DLQ_REASON,
    DLQ_STAGE,
    Record,
)
from safebus.schemas.decision import SharingDecision
from safebus.topics import TopicNames
from tests.integration.conftest import Broker, Bus, grant_partnership

pytestmark = pytest.mark.kafka

WORKERS = ("processor", "inbox", "queue", "sequencer", "monitor")
ROUTER_STAGES = frozenset({"verify", "decrypt", "validate", "replay", "route"})


@dataclass(frozen=True, kw_only=True)
class Sent:
    """A hostile record as the broker stored it, and which input it attacked."""

    target: str
    hostile: Hostile
    topic: str
    partition: int
    offset: int

    def record(self) -> Record:
        """The record as a worker reads it."""
        return Record(topic=self.topic, partition=self.partition, offset=self.offset, key=self.hostile.key,
                      value=self.hostile.value, headers=dict(self.hostile.headers))


@pytest.fixture(scope="module")
def hostile_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bus, Targets]]:
    """A fresh partnership with every worker running, and the templates the corpus breaks."""
    prefix = f"h{random.randrange(16**8):08x}"
    made = tmp_path_factory.mktemp("hostile")
    targets = build_targets(made / "templates", bootstrap=kafka.bootstrap, prefix=prefix)
    state = made / "bus"
    shutil.copytree(made / "templates", state)  # the workers' own state: same keys, none of the harness's handles
    settings = Settings(state_dir=state, bootstrap=kafka.bootstrap, names=TopicNames(prefix=prefix))
    apply_topics(kafka.bootstrap, topics_for(settings))
    grant_partnership(kafka, settings)
    bus = Bus(settings=settings, store=PartnershipStore(state))
    for name in WORKERS:
        bus.start(name)
    try:
        yield bus, targets
    finally:
        for name in list(bus.processes):
            bus.stop(name)


def _send(bootstrap: str, batches: list[tuple[str, str, list[Hostile]]]) -> list[Sent]:
    """Produce every hostile record with a plain client (up to the broker's limit) and note where each went."""
    producer = Producer({**client_config(bootstrap), "message.max.bytes": BROKER_MESSAGE_MAX_BYTES,
                         "linger.ms": 20, "acks": "all"})
    sent: list[Sent] = []
    errors: list[str] = []

    def noted(target: str, hostile: Hostile) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if err is not None or topic is None or partition is None or offset is None:
                errors.append(f"{target}/{hostile.kind}: {err}")
                return
            sent.append(Sent(target=target, hostile=hostile, topic=topic, partition=partition, offset=offset))
        return report

    for target, topic, hostiles in batches:
        for hostile in hostiles:
            producer.produce(topic, key=hostile.key, value=hostile.value, headers=list(hostile.headers.items()),
                             on_delivery=noted(target, hostile))
            producer.poll(0)
        producer.flush(60)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    return sent


def _lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records in `topics` that `group` has not committed past."""
    consumer = Consumer({**client_config(bootstrap), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(t, p) for t in topics
                      for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        committed = consumer.committed(partitions, timeout=10)
        lag = 0
        for tp in committed:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def _quiet(bus: Bus, groups: dict[str, list[str]]) -> bool:
    """Every group has committed everything, twice in a row a second apart (outputs feed later workers)."""
    for _ in range(2):
        if any(_lag(bus.settings.bootstrap, group, topics) for group, topics in groups.items()):
            return False
        time.sleep(1.0)
    return True


def _alive(bus: Bus) -> list[str]:
    return [f"{name} exited {process.returncode}: {bus.log(name)}" for name, process in bus.processes.items()
            if process.poll() is not None]


def test_thousands_of_hostile_records_stop_no_worker_and_each_is_accounted_for(
        hostile_bus: tuple[Bus, Targets]) -> None:
    """No exit; one dead letter (or the normal output) per hostile record; a good incident still goes through."""
    bus, targets = hostile_bus
    names = bus.names
    t = targets.targets
    rng = random.Random(11)

    def corpus(name: str) -> list[Hostile]:
        target = t[name]
        return target.corpus(rng)

    sent = _send(bus.settings.bootstrap, [
        ("router", t["router"].topic, corpus("router")),
        ("inbox", t["inbox"].topic, corpus("inbox")),
        ("queues", t["queues"].topic, corpus("queues")),
        ("audit", names.audit, corpus("sequencer-audit")),
        ("deadletter", names.deadletter, corpus("sequencer-deadletter")),
        ("directory", names.agencies, corpus("sequencer-directory")),
    ])
    per_target = Counter(s.target for s in sent)
    assert sum(per_target.values()) > 2000

    # One good incident after the hostile ones, through every worker.
    factory = IncidentFactory(random.Random(5), now=datetime.now(UTC))
    incident = factory.incident("schools")
    bus.publisher().publish([incident])

    groups = {
        f"{names.prefix}-router": [t["router"].topic],
        f"{names.prefix}-school-inbox": [t["inbox"].topic],
        f"{names.prefix}-referral-queues": [t["queues"].topic],
        SEQUENCER_GROUP: [names.audit, names.deadletter, names.agencies],
        "safebus-encompass-monitor": [names.audit],
    }
    deadline = time.monotonic() + 150
    while not _quiet(bus, groups):
        assert not _alive(bus), _alive(bus)
        assert time.monotonic() < deadline, {g: _lag(bus.settings.bootstrap, g, ts) for g, ts in groups.items()}
        time.sleep(1.0)
    assert not _alive(bus), _alive(bus)  # (1) no worker exited

    # (2) every hostile record: exactly one dead letter from the worker that reads it, or its normal output.
    # Readers count a dead letter once by its id (a replay writes the same id again).
    by_id: dict[str, tuple[str, int, int, str]] = {}
    seen: dict[str, list[str]] = {}
    for letter in bus.topic(names.deadletter):
        stage = letter.header(DLQ_STAGE) or ""
        letter_id = letter.header(DLQ_ID)
        try:
            origin = (letter.header(DLQ_ORIGIN_TOPIC) or "", int(letter.header(DLQ_ORIGIN_PARTITION) or -1),
                      int(letter.header(DLQ_ORIGIN_OFFSET) or -1), "router" if stage in ROUTER_STAGES else stage)
        except ValueError:
            continue  # our own hostile dead letters (their headers are the attack)
        if letter_id is not None:
            by_id[letter_id] = origin
            seen.setdefault(str(origin), []).append(f"{stage}/{letter.header(DLQ_REASON)}/{letter_id}")
    letters = Counter(by_id.values())
    decided = {d.about_event_id for d in read_facts(bus.settings.bootstrap, names.audit, SharingDecision).values()}
    ledger = open_ledger(bus.settings, read_only=True)
    inbox, queues = InboxStore(bus.settings.inbox_path), QueueStore(queue_path(bus.settings))
    read_sealed = router_sealed_reader(bus.settings)
    outcome: Counter[str] = Counter()
    problems: list[str] = []
    try:
        for item in sent:
            stage = {"router": "router", "inbox": "deliver", "queues": "deliver"}.get(item.target, "audit-sequence")
            count = letters[(item.topic, item.partition, item.offset, stage)]
            if count == 1:
                outcome[f"{item.target}:dead-lettered"] += 1
            elif count == 0 and _took(item, read_sealed, decided, ledger, inbox, queues):
                outcome[f"{item.target}:output"] += 1
            else:
                problems.append(f"{item.target}/{item.hostile.kind}: {count} dead letters "
                                f"{seen.get(str((item.topic, item.partition, item.offset, stage)))}")
            if item.target == "audit":
                monitor_letters = letters[(item.topic, item.partition, item.offset, "encompass-monitor")]
                if monitor_letters > 1:
                    problems.append(f"monitor/{item.hostile.kind}: {monitor_letters} dead letters")
                outcome["monitor:dead-lettered"] += monitor_letters
        assert not problems, (len(problems), problems[:10], dict(outcome))

        # (3) the good incident went all the way.
        assert incident.event_id in decided
        decisions = {d.decision_id: d for d in read_facts(bus.settings.bootstrap, names.audit,
                                                          SharingDecision).values()
                     if d.about_event_id == incident.event_id}
        assert all(ledger.index_of(d.event_id) is not None for d in decisions.values())
        shared = [d for d in decisions.values() if d.agreement_id == "operation-encompass" and d.output_id]
        assert shared
        assert inbox.received_at([d.output_id for d in shared if d.output_id])
        referred = [d for d in decisions.values() if d.recipient_kind != "school" and d.output_id and d.recipient
                    and d.outcome.value == "shared" and d.agreement_id != "operation-encompass"]
        assert referred
        assert all(d.output_id in queues.referral_ids(str(d.recipient)) for d in referred)
        monitor: EncompassMonitor = open_monitor(bus.settings)
        try:
            assert any(monitor.tracked(d.output_id) for d in shared if d.output_id)
        finally:
            monitor.close()
    finally:
        ledger.close()
        inbox.close()
        queues.close()
    print(f"hostile records per input: {dict(per_target)}; outcome: {dict(outcome)}; worker exits: 0")


def _took(item: Sent, read_sealed: Callable[[str, bytes], Opened | None], decided: set[str], ledger: AuditLedger,
          inbox: InboxStore, queues: QueueStore) -> bool:
    """Whether the worker reading `item` took it as normal input (it was not dead-lettered)."""
    record = item.record()
    if item.target == "router":
        header = peek_header(record.value)
        return header is not None and header.get("event_id") in decided
    if item.target in ("inbox", "queues"):  # a validly sealed record: stored under the id it carries
        header = peek_header(record.value)
        opened = read_sealed(header["recipient"], record.value) if header else None
        if header is None or opened is None:
            return False
        try:
            payload = loads_object(opened.plaintext)
        except JsonRefused:
            return False
        if item.target == "inbox":
            return bool(inbox.received_at([str(payload.get("notification_id"))]))
        return str(payload.get("referral_id")) in queues.referral_ids(header["recipient"])
    try:
        if item.target == "audit":
            fact_id = loads_object(record.value).get("event_id")
        elif item.target == "deadletter":
            fact_id = fact_from_dead_letter(record, observed_at=datetime.now(UTC)).event_id
        else:
            fact_id = fact_from_directory_record(record, observed_at=datetime.now(UTC)).event_id
    except (JsonRefused, NotAFact):
        return False
    return isinstance(fact_id, str) and ledger.index_of(fact_id) is not None

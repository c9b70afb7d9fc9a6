"""
Effectively once under SIGKILL, on the real broker (docs/adr/0003).

The behaviour: the router and the school-inbox worker may be killed with
SIGKILL at any moment (no shutdown hook runs, nothing is flushed, no offset is
committed on the way out) and restarted, and still every share is delivered,
none is delivered twice, and the audit trail as read holds exactly one record of
each decision.  Kafka itself may keep physical duplicates (a batch whose outputs
were durable but whose offsets were not yet committed is routed again); every
such duplicate must be the *same* record again (a decision with the same id,
outcome, recipient and clause; a share with the same id and content, only its
making time differing) so that deduplicating receivers make redelivery harmless.

How: 300 synthetic "schools" incidents (every child under 18 at a partnership
school, so exactly one share per child) are published in chunks of 30 at a
steady pace.  Meanwhile the test kills and restarts the inbox worker twice
(after its first deliveries, and once its replacement has resumed delivering)
and the router four times: once while a publish chunk is in flight, and three
times at a random delay after a chunk lands, once the previous replacement has
taken over its partitions, so each kill falls somewhere in the routing of fresh
input: fetching, sealing, awaiting acknowledgements or committing.  Router kills
are timed from the input, not from observed output, so a router that committed
offsets before its outputs were durable is caught when a kill falls in that gap
(likely for a gap of a second; a gap of milliseconds is beyond what a handful of
random kills can be relied on to hit).  The test then
waits until every share is in the inbox and both consumer groups have committed
past every record, so the replacements' replays are part of what is asserted.
Kill delays and thresholds come from a seeded generator; nothing asserted
depends on where the kills land.

Timing: a SIGKILLed worker never leaves its consumer group, so its replacement
waits for the broker to expire the dead member's session.  Both the router
(`safebus.processors.app.GROUP_TIMING`) and the inbox worker
(`safebus.kafka_io.GROUP_TIMING`) run with an 8 s session timeout and 1 s
heartbeats (docs/adr/0003, "Outages heal themselves"), so four router kills fit
in the stream; the fixture still sets `BROKER_SESSION_TIMEOUT` and
`BROKER_HEARTBEAT_INTERVAL` (which Faust reads from the environment, over the
app's own settings) to the same values, so the kill schedule does not depend on
the defaults.  tests/integration/test_outages.py measures the takeover itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from safebus.app.wiring import ingress_topics, key_service_for, topics_for
from safebus.directory import AgencyKind
from safebus.envelope import open_envelope, peek_header
from safebus.kafka_security import client_config
from safebus.producers.synthetic import IncidentFactory
from safebus.records import EVENT_ID
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.police import DomesticAbuseIncident
from safebus.topics import TopicRole
from tests.integration.conftest import Broker, Bus, running_bus

pytestmark = pytest.mark.kafka

INCIDENT_SEED = 20261105
"""Fixes the incidents (and so every expected count and id)."""
KILL_SEED = int(os.environ.get("SAFEBUS_KILL_SEED", "5"))
"""Fixes the kill schedule's thresholds and delays (the wall-clock moments still vary with the machine)."""
INCIDENTS = 300
CHUNK = 30
CHUNK_PAUSE_S = 5.5
"""Between publish chunks: the stream lasts about 50 s, until after the first inbox replacement resumes."""
ROUTER_KILL_DELAY_S = 1.2
"""
Router kills land up to this long after a chunk has reached the broker.  On a 2-core machine the router
has routed a chunk 0.2-0.4 s after it lands and commits its offsets 0.4-1.1 s after, so the kills fall
across routing, awaiting acknowledgements, and the gap before the commit (and sometimes after it).
"""
COMPLETE_WITHIN_S = 180.0
"""From the first publish until every share must be in the inbox and every decision on the audit topic."""
ROUTER_SESSION_TIMEOUT_S = "8"
ROUTER_HEARTBEAT_S = "1"

DECISION_TIME = frozenset({"occurred_at", "recorded_at"})
"""A redelivered incident is re-decided later: only the decision's time may differ between twins."""
SHARE_TIME = frozenset({"recorded_at"})
"""Likewise a re-sealed share: everything its recipient reads must be identical."""


@pytest.fixture
def own_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    """A fresh bus of this test's own (its workers get killed), router and inbox running."""
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", ROUTER_SESSION_TIMEOUT_S)  # Bus.start passes os.environ on
    monkeypatch.setenv("BROKER_HEARTBEAT_INTERVAL", ROUTER_HEARTBEAT_S)
    with running_bus(kafka, tmp_path_factory.mktemp("killbus"), prefix=f"k{uuid.uuid4().hex[:10]}",
                     stop_signal=signal.SIGKILL) as running:
        yield running


class Feed(threading.Thread):
    """Publishes the batch chunk by chunk at a steady pace, in the background."""

    def __init__(self, bus: Bus, chunks: list[list[DomesticAbuseIncident]]) -> None:
        """Nothing is sent until `start`."""
        super().__init__(name="feed", daemon=True)
        self.publisher = bus.publisher()
        self.chunks = chunks
        self.event_ids: list[str] = []
        self.in_flight = threading.Event()
        """Set while a sealed chunk is being sent, until the broker has acknowledged all of it."""
        self.started_chunks = 0
        self.published_chunks = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.halt = threading.Event()
        self._changed = threading.Condition()

    def run(self) -> None:
        """Publish every chunk, pausing between them."""
        try:
            for chunk in self.chunks:
                sealed = [self.publisher.seal(incident) for incident in chunk]
                with self._changed:
                    self.in_flight.set()
                    self.started_chunks += 1
                    self._changed.notify_all()
                ids = self.publisher.publish_outputs(sealed)
                with self._changed:
                    self.in_flight.clear()
                    self.event_ids.extend(ids)
                    self.published_chunks += 1
                    self._changed.notify_all()
                if self.halt.wait(CHUNK_PAUSE_S):
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc
        finally:
            with self._changed:
                self.in_flight.clear()
                self.finished.set()
                self._changed.notify_all()

    def wait_for(self, counter: Callable[[], int], beyond: int, timeout_s: float) -> bool:
        """Block until `counter()` exceeds `beyond`; False if it does not (feed over, or timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: counter() > beyond or self.finished.is_set(), timeout=timeout_s)
            return counter() > beyond


class Progress:
    """Cheap views of how far the bus has got, for timing kills and for knowing when it is settled."""

    def __init__(self, bus: Bus) -> None:
        """Its consumer is used only for metadata and watermarks: it never subscribes or commits."""
        self.bus = bus
        self._consumer = Consumer({**client_config(bus.settings.bootstrap),
                                   "group.id": f"{bus.names.prefix}-kill-test-probe"})
        self._admin = AdminClient(client_config(bus.settings.bootstrap))
        self._audit: list[TopicPartition] = []
        self._audit_seen = 0
        self.router_group = f"{bus.names.prefix}-router"
        self.inbox_group = f"{bus.names.prefix}-school-inbox"

    def _partitions(self, topics: set[str]) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for topic in sorted(topics)
                for p in self._consumer.list_topics(topic, timeout=10).topics[topic].partitions]

    def audit_records(self) -> int:
        """Records now on the audit topic, duplicates included (the last count seen while leadership settles)."""
        with contextlib.suppress(KafkaException):
            self._audit = self._audit or self._partitions({self.bus.names.audit})
            self._audit_seen = sum(int(self._consumer.get_watermark_offsets(tp, timeout=10)[1]) for tp in self._audit)
        return self._audit_seen

    def inbox_rows(self) -> int:
        """Rows now in the inbox database (0 before the worker has created it)."""
        path = self.bus.settings.inbox_path
        if not path.exists():
            return 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])
        except sqlite3.OperationalError:  # the worker has not created its table yet
            return 0
        finally:
            db.close()

    def members(self, group: str) -> tuple[ConsumerGroupState | None, frozenset[str]]:
        """The state of consumer group `group` and its members' ids (SIGKILLed ones linger until evicted)."""
        try:
            described = self._admin.describe_consumer_groups([group])[group].result(timeout=30)
        except KafkaException:
            return None, frozenset()
        return described.state, frozenset(m.member_id for m in described.members)

    def lag(self, group: str, topics: set[str]) -> int | None:
        """
        Records on `topics` that consumer group `group` has not yet committed past (a restart would redo
        them); None while the broker cannot say (its group coordinator still loading, say).
        """
        try:
            request = [ConsumerGroupTopicPartitions(group, self._partitions(topics))]
            committed = self._admin.list_consumer_group_offsets(request)[group].result(timeout=30).topic_partitions
            behind = 0
            for tp in committed or []:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                behind += int(high) - max(int(tp.offset), int(low))
        except KafkaException:
            return None
        return behind

    def close(self) -> None:
        """Release the probe consumer."""
        self._consumer.close()


@dataclass
class Chaos:
    """Kills and restarts workers, remembering what it did for the report."""

    bus: Bus
    progress: Progress
    feed: Feed
    deadline: float
    rng: random.Random
    t0: float = field(default_factory=time.monotonic)
    kills: list[str] = field(default_factory=list)
    router_members_killed: frozenset[str] = frozenset()

    def until(self, probe: Callable[[], bool], what: str) -> None:
        """Poll `probe` every 50 ms; fail the test (with the workers' logs) past the deadline."""
        while not probe():
            if self.feed.error is not None:
                raise AssertionError("the publisher failed") from self.feed.error
            if time.monotonic() > self.deadline:
                pytest.fail(f"timed out waiting for {what}; kills so far: {self.kills}\n"
                            f"processor log:\n{self.bus.log('processor')}\ninbox log:\n{self.bus.log('inbox')}")
            time.sleep(0.05)

    def kill_and_restart(self, name: str, note: str) -> None:
        """SIGKILL worker `name` now, then start a fresh one."""
        in_flight = self.feed.in_flight.is_set()
        self.bus.stop(name, signal.SIGKILL)
        if name == "processor":  # a killed member stays listed in its group until its session expires
            self.router_members_killed = self.progress.members(self.progress.router_group)[1]
        audit, rows = self.progress.audit_records(), self.progress.inbox_rows()
        self.kills.append(f"{time.monotonic() - self.t0:6.1f}s SIGKILL {name:9} ({note}; audit records {audit}, "
                          f"inbox rows {rows}, publish in flight: {in_flight})")
        self.bus.start(name)

    def kill_router_mid_publish(self) -> None:
        """Kill the router while a chunk's records are reaching the broker (retrying on a later chunk if missed)."""
        while True:
            started = self.feed.started_chunks
            if not self.feed.wait_for(lambda: self.feed.started_chunks, started,
                                      timeout_s=max(0.0, self.deadline - time.monotonic())):
                pytest.fail(f"no publish chunk left to kill the router during; kills so far: {self.kills}")
            if self.feed.in_flight.is_set():
                self.kill_and_restart("processor", f"mid-publish of chunk {self.feed.started_chunks}")
                return

    def kill_router_after_input(self, kill: int) -> None:
        """Once the last replacement owns the partitions, kill the router at a random delay after a chunk lands."""

        def replacement_took_over() -> bool:
            state, members = self.progress.members(self.progress.router_group)
            return state == ConsumerGroupState.STABLE and bool(members) and members.isdisjoint(
                self.router_members_killed)

        self.until(replacement_took_over, "the router's replacement to take over its partitions")
        published = self.feed.published_chunks
        landed = self.feed.wait_for(lambda: self.feed.published_chunks, published,
                                    timeout_s=max(0.0, self.deadline - time.monotonic()))
        delay = self.rng.uniform(0.0, ROUTER_KILL_DELAY_S)
        time.sleep(delay)
        where = f"{delay:.2f}s after chunk {self.feed.published_chunks} landed" if landed else "feed over"
        self.kill_and_restart("processor", f"router kill {kill}, {where}")


def egress_payloads(bus: Bus) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """
    Every record on every egress topic (school notifications and referrals), opened, by (topic, record key).

    Each record is opened with the keyring of the agency its envelope names as
    recipient, and must verify as the router's.
    """
    directory = bus.store.load_directory()
    router = directory.router().public_keys()
    subject_keys = key_service_for(bus.settings.state_dir)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for topic in (t.name for t in topics_for(bus.settings) if t.role is TopicRole.EGRESS):
        for record in bus.topic(topic):
            recipient = (peek_header(record.value) or {}).get("recipient", "")
            opened = open_envelope(record.value, recipient=bus.store.keyring(recipient),
                                   senders={router.agency_id: router}, topic=record.topic,
                                   subject_keys=subject_keys.lookup)
            grouped[(topic, (record.key or b"").decode())].append(json.loads(opened.plaintext))
    return grouped


def without(payload: dict[str, Any], clock_fields: frozenset[str]) -> dict[str, Any]:
    """A record's content without the moment it was (re)made."""
    return {name: value for name, value in payload.items() if name not in clock_fields}


def inbox_counts(bus: Bus) -> Counter[str]:
    """How many inbox rows hold each notification id, read straight from the database (this bus's own)."""
    db = sqlite3.connect(f"file:{bus.settings.inbox_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT notification_id FROM alerts").fetchall()
    finally:
        db.close()
    return Counter(str(nid) for (nid,) in rows)


def redeliveries_discarded(bus: Bus) -> int:
    """What the inbox worker's own logs say it received again and did not store (for the report)."""
    total = 0
    for line in (bus.settings.state_dir / "inbox.log").read_text(errors="replace").splitlines():
        if '"alerts_delivered"' in line:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                total += int(json.loads(line).get("redelivered", 0))
    return total


def test_sigkill_at_random_moments_loses_and_doubles_nothing(own_bus: Bus) -> None:
    """Kill the router 4x and the inbox 2x mid-stream: every share once, every decision once, no dead letters."""
    bus = own_bus
    factory = IncidentFactory(random.Random(INCIDENT_SEED), now=datetime.now(UTC))
    batch = [factory.incident("schools") for _ in range(INCIDENTS)]
    event_ids = {incident.event_id for incident in batch}
    expected_shares = sum(len(incident.children) for incident in batch)
    assert len(event_ids) == INCIDENTS
    assert all(child.school_urn for incident in batch for child in incident.children)

    feed = Feed(bus, [batch[i:i + CHUNK] for i in range(0, INCIDENTS, CHUNK)])
    progress = Progress(bus)
    started = time.monotonic()
    chaos = Chaos(bus=bus, progress=progress, feed=feed, deadline=started + COMPLETE_WITHIN_S,
                  rng=random.Random(KILL_SEED), t0=started)
    rng = chaos.rng
    feed.start()
    try:
        # Inbox first, as soon as it has delivered something: its replacement waits for the dead
        # member's session to expire (8 s), and resumes while the feed is still publishing.
        inbox_target = rng.randint(5, 30)
        chaos.until(lambda: progress.inbox_rows() >= inbox_target, f"{inbox_target} inbox rows")
        time.sleep(rng.uniform(0.0, 0.3))
        chaos.kill_and_restart("inbox", "after first deliveries")
        rows_at_restart = progress.inbox_rows()
        # Router: once while a chunk is arriving, then three times while routing fresh input.
        chaos.kill_router_mid_publish()
        for kill in range(2, 5):
            chaos.kill_router_after_input(kill)
        # Inbox again, once its replacement has resumed delivering.
        inbox_target = min(rows_at_restart + rng.randint(1, 30), expected_shares)
        chaos.until(lambda: progress.inbox_rows() >= inbox_target, "the restarted inbox worker to deliver")
        time.sleep(rng.uniform(0.0, 0.3))
        chaos.kill_and_restart("inbox", "after its replacement resumed")

        def complete() -> bool:
            if progress.inbox_rows() < expected_shares or progress.audit_records() < expected_shares:
                return False
            decided = bus.encompass(event_ids)
            shared = {d.output_id for d in decided.values() if d.output_id}
            return len(decided) >= expected_shares and bus.delivered(shared) == shared

        def quiescent() -> bool:
            # Both groups have committed past everything, so no restart would redo anything: the
            # record counts read below are final, including whatever the last replacements replayed.
            if progress.lag(progress.router_group, set(ingress_topics(bus.settings))) != 0:
                return False
            schools = bus.store.load_directory().of_kind(AgencyKind.SCHOOL)
            return progress.lag(progress.inbox_group, {bus.names.egress(school.id) for school in schools}) == 0

        waited, settled = time.monotonic(), False
        while not settled and time.monotonic() < chaos.deadline:
            settled = complete() and quiescent()
            time.sleep(0 if settled else 1.0)
        settle_s = time.monotonic() - waited
    finally:
        feed.halt.set()
        feed.join(timeout=30)
        progress.close()
    elapsed = time.monotonic() - started
    if feed.error is not None:
        raise AssertionError("the publisher failed") from feed.error
    assert set(feed.event_ids) == event_ids, "the whole batch must have been published"

    # The audit trail as read (read_facts deduplicates by decision id, as an IG officer reads it):
    # the per-child Operation Encompass decisions, one per child ...
    decisions = bus.encompass(event_ids)
    # ... and as stored: every physical record of any decision about the batch, under any agreement.
    audit = [r for r in bus.topic(bus.names.audit)
             if r.header("safebus.cause") in event_ids and SharingDecision.type_name().encode() in r.value]
    physical: dict[str, list[SharingDecision]] = defaultdict(list)
    for record in audit:
        decision = SharingDecision.model_validate_json(record.value)
        assert (record.key or b"").decode() == decision.decision_id, "audit records are keyed by decision id"
        physical[decision.decision_id].append(decision)
    audit_duplicates = len(audit) - len(physical)

    egress = egress_payloads(bus)
    egress_duplicates = sum(len(copies) - 1 for copies in egress.values())
    notifications = {key: copies for (topic, key), copies in egress.items()
                     if copies[0].get("event_type") == EncompassNotification.type_name()}
    notification_duplicates = sum(len(copies) - 1 for copies in notifications.values())
    schools = {school.id for school in bus.store.load_directory().of_kind(AgencyKind.SCHOOL)}
    shared_ids = {d.output_id for d in decisions.values() if d.output_id}
    counts = inbox_counts(bus)
    dead = [r for r in bus.topic(bus.names.deadletter) if r.header(EVENT_ID) in event_ids | shared_ids]

    report = (f"\nkill seed {KILL_SEED}: {INCIDENTS} incidents, {expected_shares} children; settled in {elapsed:.0f}s "
              f"({settle_s:.0f}s after the last kill)\n"
              f"physical duplicates on Kafka: audit {audit_duplicates} of {len(audit)} records, "
              f"egress {egress_duplicates} of {sum(len(c) for c in egress.values())} records "
              f"({notification_duplicates} of them notifications, the rest referrals); "
              f"redeliveries the inbox discarded: {redeliveries_discarded(bus)}\n" + "\n".join(chaos.kills))
    print(report)

    # No decision lost or doubled as read: one per child, all shared with a school, each its own notification.
    assert len(decisions) == expected_shares, f"decisions as read {len(decisions)} != children{report}"
    assert {d.about_event_id for d in decisions.values()} == event_ids, report
    assert all(d.outcome is Outcome.SHARED and d.recipient in schools for d in decisions.values()), report
    assert len(shared_ids) == expected_shares, f"distinct notification ids {len(shared_ids)}{report}"

    # No lost share; no share shown twice.
    missing = shared_ids - bus.delivered(shared_ids)
    assert not missing, f"{len(missing)} of {expected_shares} shares never reached the inbox{report}"
    doubled = {nid: n for nid, n in counts.items() if n > 1}
    assert not doubled, f"{len(doubled)} notifications stored more than once in the inbox{report}"
    assert set(counts) == shared_ids, f"the inbox holds exactly this batch's notifications{report}"

    # Every physical duplicate on Kafka is the same record again.
    assert set(decisions) <= set(physical)
    for decision_id, twins in physical.items():
        first = without(twins[0].model_dump(mode="json"), DECISION_TIME)
        assert all(without(t.model_dump(mode="json"), DECISION_TIME) == first for t in twins[1:]), (
            f"audit duplicates of {decision_id} disagree{report}")
    assert set(notifications) == shared_ids, f"notification ids on egress differ from the decisions'{report}"
    for (topic, key), copies in egress.items():
        assert copies[0]["event_id"] == key, f"egress records are keyed by their payload's id ({topic})"
        assert all(without(c, SHARE_TIME) == without(copies[0], SHARE_TIME) for c in copies[1:]), (
            f"egress duplicates of {key} on {topic} disagree{report}")

    # Nothing about the batch was dead-lettered; everything was committed; both workers are still up.
    assert not dead, f"dead letters for the batch: {[r.header('safebus.dlq.reason') for r in dead]}{report}"
    assert settled, f"the workers had not committed past every record within {COMPLETE_WITHIN_S:.0f}s{report}"
    for name in ("processor", "inbox"):
        assert bus.processes[name].poll() is None, f"{name} exited\n{bus.log(name)}"

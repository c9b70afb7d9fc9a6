"""
Directory changes reach running workers on a real broker: rotations, new schools and retirements, no restarts.

One bus (router, school inbox and deadline monitor as their own processes, the
referral-queue worker in a thread) runs for the whole module; the partnership
administrator changes the directory with the documented commands
(``safebus agency … --bootstrap``) while it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safebus.app import agency_admin
from safebus.app.agency_admin import publish_entries
from safebus.app.encompass_wiring import open_monitor
from safebus.app.queue_wiring import build_queue_worker, open_queue_store, queue_opener
from safebus.app.wiring import key_service_for, tokeniser_for
from safebus.consumers.audit.log import read_facts
from safebus.directory import AgencyKind, PartnershipStore, SignedAgency
from safebus.kafka_security import client_config
from safebus.live_directory import LiveDirectory
from safebus.producers.police import PolicePublisher
from safebus.producers.synthetic import create_partnership
from safebus.publisher import AgencyPublisher
from safebus.records import DLQ_ORIGIN_TOPIC, DLQ_REASON
from safebus.schemas import marac
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import Escalated
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.police import Child, DomesticAbuseIncident
from safebus.schemas.registry import Family
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka

POLICE, MARAC = "northdale-police", "northdale-marac"
NEW_SCHOOL_DEADLINE_S = 15.0
"""The promise: a school's first alert is in its inbox within seconds of the school being published."""
NEW_SENDER_DEADLINE_S = 30.0
"""A new sender's first event is routed this soon after it is published (the router resubscribes: a rebalance)."""


class QueueThread:
    """The referral-queue worker, as ``safebus queue run`` runs it, in a thread of the test process."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="queue-worker", daemon=True)

    def _run(self) -> None:
        try:
            build_queue_worker(self.bus.settings).run(self.stop)
        except BaseException as exc:  # surfaced in failure messages
            self.errors.append(exc)
            raise


@pytest.fixture(scope="module")
def live_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """Router, inbox, monitor and queue worker running; the directory also published on its topic."""
    with running_bus(kafka, tmp_path_factory.mktemp("live"), prefix=f"l{uuid.uuid4().hex[:10]}") as bus:
        publish_entries(kafka.bootstrap, bus.names.agencies, bus.store.signed_entries())
        bus.start("monitor")
        queues = QueueThread(bus)
        queues.thread.start()
        try:
            yield bus
        finally:
            queues.stop.set()
            queues.thread.join(timeout=30)


def _admin(bus: Bus, *argv: str) -> str:
    """Run one ``safebus agency`` command as the administrator does; return its output."""
    env = {**os.environ, "SAFEBUS_HOME": str(bus.settings.state_dir), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix}
    done = subprocess.run([sys.executable, "-m", "safebus", "agency", *argv, "--bootstrap", bus.settings.bootstrap],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _marac_actions_for_police(bus: Bus, count: int) -> list[marac.MaracActionAssigned]:
    directory = bus.store.load_directory()
    agency = directory.get(MARAC)
    assert agency is not None
    publisher = AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys(MARAC),
                                kind=agency.kind, router=directory.router().public_keys(), names=bus.names,
                                tokeniser=tokeniser_for(bus.settings.state_dir),
                                keys=key_service_for(bus.settings.state_dir))
    now = datetime.now(UTC)
    actions = [marac.MaracActionAssigned(
        **event_metadata(marac.MaracActionAssigned, producer=MARAC, occurred_at=now, recorded_at=now),
        action_id=f"MA-{uuid.uuid4().hex[:6]}-{n}", case_reference="MC-2026-0077", owner_agency=POLICE,
        description="Flag the address for an urgent response.", due_date=now.date()) for n in range(count)]
    publisher.publish(actions)
    return actions


def _referral_ids(bus: Bus, actions: list[marac.MaracActionAssigned]) -> list[str]:
    def decided() -> list[SharingDecision] | None:
        found = bus.decisions({a.event_id for a in actions})
        return list(found.values()) if len(found) >= len(actions) else None

    decisions = wait_for(decided, what="the police actions' decisions")
    assert {d.recipient for d in decisions} == {POLICE}
    return [d.output_id for d in decisions if d.output_id]


def _police_queue(bus: Bus) -> list[str]:
    store = open_queue_store(bus.settings)
    try:
        return [i.referral_id for i in store.items(POLICE, queue_opener(bus.settings)) if i.referral is not None]
    finally:
        store.close()


def test_police_keys_rotated_while_the_queue_worker_runs(live_bus: Bus) -> None:
    """
    After a rotation the next referrals to the police are delivered, once each, and earlier ones still open.

    On main the queue worker kept the keyring it started with: the router sealed
    for the new key and the worker dead-lettered both as ``wrong-recipient``.
    """
    bus = live_bus
    [before] = _referral_ids(bus, _marac_actions_for_police(bus, 1))
    wait_for(lambda: before in _police_queue(bus), what="a referral delivered before the rotation")

    out = _admin(bus, "rotate-keys", "--agency", POLICE)
    assert "(superseded)" in out
    assert "(active)" in out

    after = _referral_ids(bus, _marac_actions_for_police(bus, 2))
    queued = wait_for(lambda: _police_queue(bus) if set(after) <= set(_police_queue(bus)) else None,
                      what=f"both referrals sealed for the new police key in the police queue\n{bus.log('processor')}")
    assert sorted(r for r in queued if r in after) == sorted(after), "each delivered exactly once"
    assert before in queued, "what was sealed for the superseded key still opens"

    referral_topic = bus.names.egress(POLICE, Family.REFERRAL)
    refused = [r for r in bus.topic(bus.names.deadletter)
               if r.header(DLQ_ORIGIN_TOPIC) == referral_topic and r.header(DLQ_REASON) == "wrong-recipient"]
    assert len(refused) <= len(after), "a raced referral may be dead-lettered once, then retried and delivered"


def test_a_school_published_while_everything_runs_gets_its_first_alert_within_seconds(live_bus: Bus) -> None:
    """
    A new school's first alert lands in its inbox within seconds of publishing the school, and is not escalated.

    On main the inbox worker never subscribed to the new school's topic (nothing
    arrived until a restart), and the monitor tracked the alert with no setting.
    """
    bus = live_bus
    published_at = datetime.now(UTC)
    _admin(bus, "add", "--agency", "school-900107", "--kind", "school", "--name", "Sedgefold Primary School",
           "--urn", "900107")
    published = time.monotonic()
    incident = make_incident(Child(first_name="Wren", surname="Ashcombe", date_of_birth=datetime(2017, 2, 3).date(),
                                   present=True, school_urn="900107"))
    bus.publisher().publish([incident])
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        what=f"the Encompass decision\n{bus.log('processor')}")
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900107")
    notification_id = decision.output_id
    assert notification_id is not None

    def received() -> datetime | None:
        inbox = bus.inbox()
        try:
            return inbox.received_at([notification_id]).get(notification_id)
        finally:
            inbox.close()

    arrived = wait_for(received, timeout_s=NEW_SCHOOL_DEADLINE_S, what=f"the alert in the new school's inbox\n"
                                                                      f"{bus.log('inbox')}")
    took = time.monotonic() - published
    print(f"\nnew school published -> first alert in its inbox: {took:.2f} s "
          f"(received_at - published_at = {(arrived - published_at).total_seconds():.2f} s)")
    assert took < NEW_SCHOOL_DEADLINE_S
    alert = bus.alert("900107", notification_id)
    assert alert is not None
    assert alert.notification is not None
    assert alert.notification.setting_urn == "900107"

    monitor = open_monitor(bus.settings)
    try:
        tracked = wait_for(lambda: (lambda t: t if t and t.delivered_at else None)(monitor.tracked(notification_id)),
                           what=f"the monitor tracking the delivered alert\n{bus.log('monitor')}")
    finally:
        monitor.close()
    assert (tracked.desk, tracked.setting_urn) == ("setting", "900107"), "tracked under the new school's own URN"
    escalations = read_facts(bus.settings.bootstrap, bus.names.audit, Escalated)
    assert not [e for e in escalations.values() if e.notification_id == notification_id]


def _incident_from(bus: Bus, force: str, child: Child) -> DomesticAbuseIncident:
    """Publish one incident about `child` as police force `force`, with that force's own keys."""
    directory = bus.store.load_directory()
    publisher = PolicePublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys(force),
                                kind=AgencyKind.POLICE, router=directory.router().public_keys(), names=bus.names,
                                tokeniser=tokeniser_for(bus.settings.state_dir),
                                keys=key_service_for(bus.settings.state_dir))
    incident = make_incident(child).model_copy(update={"producer": force})
    publisher.publish([incident])
    return incident


def test_a_police_force_published_while_the_router_runs_has_its_first_incident_routed(live_bus: Bus) -> None:
    """
    A force added while everything runs has its first incident routed to the school, with no restart.

    On main the router read only the ingress topics it found at start-up: the new
    force's incident sat unread on its topic until ``processor run`` was restarted.
    """
    bus = live_bus
    force = "eastmarch-police"
    router = bus.processes["processor"]
    running = make_incident(Child(first_name="Ivo", surname="Marchbank", date_of_birth=datetime(2018, 9, 1).date(),
                                  present=True, school_urn="900101"))
    bus.publisher().publish([running])
    wait_for(lambda: bus.encompass({running.event_id}), what=f"the router routing\n{bus.log('processor')}")
    _admin(bus, "add", "--agency", force, "--kind", "police", "--name", "Eastmarch Constabulary")
    published = time.monotonic()
    incident = _incident_from(bus, force, Child(first_name="Ned", surname="Farrowdale",
                                                date_of_birth=datetime(2018, 4, 5).date(), present=True,
                                                school_urn="900101"))
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        timeout_s=NEW_SENDER_DEADLINE_S,
                        what=f"the new force's incident routed\n{bus.log('processor')}")
    took = time.monotonic() - published
    print(f"\nnew police force published -> its first incident decided: {took:.2f} s")
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900101")
    assert decision.output_id is not None
    wait_for(lambda: bus.alert("900101", decision.output_id or ""), timeout_s=NEW_SCHOOL_DEADLINE_S,
             what=f"the alert in the school's inbox\n{bus.log('inbox')}")
    assert router.poll() is None, "the router never stopped"
    assert bus.processes["processor"] is router, "the same router process, never restarted"


def test_a_sender_whose_topics_are_created_after_its_entry_is_read_once_they_exist(live_bus: Bus) -> None:
    """
    An entry published before its topics exist (another machine's ``agency publish``, then ``topics apply``).

    The router subscribes to the new names at once; their partitions are assigned
    at its next metadata refresh, so the first incident is routed without a restart.
    """
    bus = live_bus
    force = "westfell-police"
    router = bus.processes["processor"]
    now = datetime.now(UTC)
    signed = agency_admin.add_agency(bus.store, agency_id=force, kind=AgencyKind.POLICE, name="Westfell Police",
                                     urn=None, now=now)
    publish_entries(bus.settings.bootstrap, bus.names.agencies, [signed])
    wait_for(lambda: force in bus.log("processor"), timeout_s=10, what="the router seeing the new entry")
    time.sleep(2.0)  # the router has subscribed to topics that do not exist yet
    agency_admin.create_topics(signed.entry, bootstrap=bus.settings.bootstrap, names=bus.names)
    created = time.monotonic()
    incident = _incident_from(bus, force, Child(first_name="Orla", surname="Pennick",
                                                date_of_birth=datetime(2013, 3, 4).date(), present=True,
                                                school_urn="900102"))
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        timeout_s=NEW_SENDER_DEADLINE_S,
                        what=f"the incident routed once the topics exist\n{bus.log('processor')}")
    print(f"\nnew force's topics created -> its first incident decided: {time.monotonic() - created:.2f} s")
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900102")
    assert router.poll() is None, "the router never stopped"


def test_a_retired_school_receives_nothing_further(live_bus: Bus) -> None:
    """
    Once a school is retired and published, its pupils' alerts go to the MASH education desk, not to it.

    On main there was no way to retire an agency (only one key generation at a time).
    """
    bus = live_bus
    school_topic = bus.names.egress("school-900106")
    before = len(bus.topic(school_topic))
    out = _admin(bus, "retire", "--agency", "school-900106")
    assert "(active)" not in out
    assert "(retired)" in out

    incident = make_incident(Child(first_name="Tamsin", surname="Orrell", date_of_birth=datetime(2015, 6, 7).date(),
                                   present=False, school_urn="900106"))
    bus.publisher().publish([incident])
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        what=f"the Encompass decision\n{bus.log('processor')}")
    assert decision.recipient != "school-900106"
    assert decision.outcome is Outcome.DEFERRED, decision.reason
    assert len(bus.topic(school_topic)) == before, "nothing new on the retired school's topic"


def test_a_machine_with_only_the_trust_anchor_follows_the_topic(kafka: Broker, tmp_path: Path) -> None:
    """
    Another machine's live directory takes published changes within a second, and refuses forged or replayed ones.

    Its directory file never changes: everything it learns comes from the topic.
    """
    admin_state, reader_state = tmp_path / "admin", tmp_path / "reader"
    topic = f"d{uuid.uuid4().hex[:8]}.reference.agencies"
    from confluent_kafka.admin import AdminClient, NewTopic

    client = AdminClient(client_config(kafka.bootstrap))  # kept: its futures die with it
    client.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic].result(30)
    admin = PartnershipStore(admin_state)
    create_partnership(admin)
    reader = PartnershipStore(reader_state)
    reader.write_trust_anchor(admin.trust_anchor())
    reader.save_entries("Northdale", admin.signed_entries())
    publish_entries(kafka.bootstrap, topic, admin.signed_entries())
    live = LiveDirectory.start(reader, bootstrap=kafka.bootstrap, topic=topic)
    try:
        now = datetime.now(UTC)
        original = next(s for s in admin.signed_entries() if s.entry.id == POLICE)
        rotated = agency_admin.rotate_keys(admin, POLICE, now=now)
        added = agency_admin.add_agency(admin, agency_id="school-900108", kind=AgencyKind.SCHOOL,
                                        name="Holloway Green Primary", urn="900108", now=now)
        forged_raw = json.loads(added.model_dump_json())
        forged_raw["entry"]["id"], forged_raw["entry"]["urn"] = "school-900109", "900109"
        forged = SignedAgency.model_validate(forged_raw)
        started = time.monotonic()
        assert original.entry.issued_at < rotated.entry.issued_at
        publish_entries(kafka.bootstrap, topic, [rotated, added, forged, original])  # the genuine old entry last

        def seen() -> bool | None:
            police = live().get(POLICE)
            return True if live().school_by_urn("900108") and police and len(police.keys) == 2 else None

        wait_for(seen, timeout_s=10, what="the rotation and the new school on the reader")
        print(f"\nreader machine saw the published changes after {time.monotonic() - started:.2f} s")
        time.sleep(1.0)  # the forged and the replayed entries came in the same batch: give them every chance
        assert live().school_by_urn("900109") is None, "an entry the root key did not sign is refused"
        police = live().get(POLICE)
        assert police is not None
        assert [g.status.value for g in police.keys] == ["superseded", "active"], \
            "a replayed older entry does not undo the rotation"
    finally:
        live.close()

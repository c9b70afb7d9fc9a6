"""The live directory without a broker: verified swaps, newest entry wins, superseded keys kept, workers refresh."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebus.app import agency_admin
from safebus.app.queue_wiring import build_queue_worker, open_queue_store, queue_opener
from safebus.app.wiring import Settings, build_audit_sequencer, build_handler, build_police_publisher, inbox_opener
from safebus.consumers.audit.facts import delivered_fact
from safebus.consumers.queues.store import ReferralArrival
from safebus.directory import AgencyKind, SignedAgency, new_entry, sign_entry
from safebus.fact_signing import FactSigner
from safebus.keys import PrivateKeys
from safebus.live_directory import DerivedMapping, LiveDirectory, Refresher
from safebus.records import DLQ_REASON, Origin, Output, Record
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import DeliveryChannel
from safebus.schemas.police import (
    Adult,
    AdultRole,
    Child,
    CrimeStatus,
    DomesticAbuseIncident,
    Relationship,
    RiskGrade,
    RiskTool,
)
from safebus.schemas.registry import Family
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, KeepingProducer, Partnership

POLICE, CS = "northdale-police", "northdale-childrens-services"


def _live(partnership: Partnership) -> LiveDirectory:
    return LiveDirectory(store=partnership.store, initial=partnership.store.load_directory(now=FIXED_NOW),
                         clock=lambda: FIXED_NOW)


def _signed(partnership: Partnership, agency_id: str) -> SignedAgency:
    return next(s for s in partnership.store.signed_entries() if s.entry.id == agency_id)


def test_a_published_rotation_swaps_in_a_new_directory_and_readers_keep_theirs(partnership: Partnership) -> None:
    """A newer signed entry replaces the old one in a new Directory object; one read before keeps the old view."""
    live = _live(partnership)
    before = live()
    rotated = agency_admin.rotate_keys(partnership.store, POLICE, now=datetime.now(UTC) + timedelta(minutes=1))
    assert live.offer([rotated]) == [POLICE]
    after = live()
    assert after is not before
    assert live.version >= 1
    old, new = before.get(POLICE), after.get(POLICE)
    assert old is not None
    assert new is not None
    assert len(old.keys) == 1, "what a reader already holds never changes under it"
    assert [g.status.value for g in new.keys] == ["superseded", "active"], "the superseded key stays for reading"
    assert after.signing_key(POLICE, old.keys[0].signing_key_id) is not None


def test_an_older_or_identical_entry_changes_nothing(partnership: Partnership) -> None:
    """A replayed earlier entry on the topic cannot undo a rotation; the same entry again is not a change."""
    original = _signed(partnership, POLICE)
    live = _live(partnership)
    rotated = agency_admin.rotate_keys(partnership.store, POLICE, now=original.entry.issued_at + timedelta(hours=1))
    live.offer([rotated])
    version = live.version
    assert live.offer([original]) == []
    assert live.offer([rotated]) == []
    assert live.version == version
    police = live().get(POLICE)
    assert police is not None
    assert len(police.keys) == 2


def test_entries_not_signed_by_the_root_key_are_refused(partnership: Partnership) -> None:
    """A forged or re-signed entry (another key) is refused exactly as the start-up load refuses it."""
    live = _live(partnership)
    genuine = _signed(partnership, POLICE)
    forged_raw = json.loads(genuine.model_dump_json())
    forged_raw["entry"]["name"] = "A forged force"
    other_root = sign_entry(genuine.entry.model_copy(update={"id": "northdale-police-2"}), Ed25519PrivateKey.generate())
    assert live.offer([SignedAgency.model_validate(forged_raw), other_root]) == []
    assert live.offer_raw([b"not json", b"{}"]) == []
    assert live().get("northdale-police-2") is None
    police = live().get(POLICE)
    assert police is not None
    assert police.name != "A forged force"


def test_an_expired_entry_leaves_the_directory(partnership: Partnership) -> None:
    """Entries are signed for 90 days: once expired, a running worker drops it as a restarted one would."""
    moment = [FIXED_NOW]
    live = LiveDirectory(store=partnership.store, initial=partnership.store.load_directory(now=FIXED_NOW),
                         clock=lambda: moment[0])
    entry = _signed(partnership, POLICE).entry
    moment[0] = entry.expires_at + timedelta(seconds=1)
    assert POLICE in live.offer([])
    assert live().get(POLICE) is None


def test_the_local_file_is_followed_too(partnership: Partnership) -> None:
    """An administrator's change on this machine applies at the next read, with no broker at all."""
    live = _live(partnership)
    agency_admin.add_agency(partnership.store, agency_id="school-900107", kind=AgencyKind.SCHOOL,
                            name="Sedgefold Primary School", urn="900107", now=FIXED_NOW)
    assert live().school_by_urn("900107") is not None
    refresher = Refresher(live)
    assert not refresher.changed()
    agency_admin.retire_agency(partnership.store, "school-900107", now=FIXED_NOW)
    assert refresher.changed()
    assert not refresher.changed(), "each change is reported once"


def test_a_retired_agency_is_not_onboarded_but_stays_on_record(partnership: Partnership) -> None:
    """Retiring an agency retires every key: it is out of the routing view, its entry and history remain."""
    agency_admin.retire_agency(partnership.store, "school-900106", now=FIXED_NOW)
    directory = partnership.store.load_directory(now=FIXED_NOW)
    school = directory.get("school-900106")
    assert school is not None
    assert not school.is_active
    assert {g.status.value for g in school.keys} == {"retired"}
    assert directory.onboarded().get("school-900106") is None
    assert directory.onboarded().school_by_urn("900101") is not None


def test_a_derived_mapping_follows_the_directory(partnership: Partnership) -> None:
    """Settings by URN (the monitor, the e-mail notices) include a school published after they were built."""
    live = _live(partnership)
    urns = DerivedMapping(live, lambda d: {s.id: s.urn for s in d.of_kind(AgencyKind.SCHOOL) if s.urn})
    assert "school-900107" not in urns
    agency_admin.add_agency(partnership.store, agency_id="school-900107", kind=AgencyKind.SCHOOL,
                            name="Sedgefold Primary School", urn="900107", now=FIXED_NOW)
    assert urns.get("school-900107") == "900107"


def _high_risk_incident() -> DomesticAbuseIncident:
    """High risk with a child: the router refers it to children's services, among others."""
    return DomesticAbuseIncident(
        **event_metadata(DomesticAbuseIncident, producer=POLICE, occurred_at=FIXED_NOW - timedelta(hours=2),
                         recorded_at=FIXED_NOW - timedelta(hours=1)),
        police_reference="NDP-2026-000778", incident_at=FIXED_NOW - timedelta(hours=2),
        crime_status=CrimeStatus.CRIME, risk_grade=RiskGrade.HIGH, risk_tool=RiskTool.DASH,
        adults=(Adult(first_name="Vera", surname="Holloway", role=AdultRole.VICTIM, relationship=Relationship.PARENT,
                      date_of_birth=date(1990, 6, 1)),
                Adult(first_name="Otis", surname="Pemberton", role=AdultRole.SUSPECT,
                      relationship=Relationship.PARENTS_PARTNER)),
        children=(Child(first_name="Wren", surname="Holloway", date_of_birth=date(2017, 5, 2), present=True,
                        school_urn="900101"),),
        narrative="Synthetic narrative.",
    )


@pytest.fixture
def settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames(prefix="t"))


def test_a_referral_sealed_for_a_key_the_worker_has_not_loaded_is_retried_after_the_change(
    settings: Settings, partnership: Partnership,
) -> None:
    """
    Rotated keys: refused as ``wrong-recipient`` while the worker's keyring is stale, delivered once it refreshes.

    The dead letter was written (it stands in the audit trail); the referral is delivered too, exactly once.
    """
    worker = build_queue_worker(settings, clock=lambda: FIXED_NOW)
    facts: list[Output] = []
    worker.publish_audit = facts.extend
    worker.current_topics()  # the worker's loop, before a rotation
    agency_admin.rotate_keys(partnership.store, CS, now=FIXED_NOW)
    record = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(_high_risk_incident())
    outputs = build_handler(settings, clock=lambda: FIXED_NOW).handle(
        record.value, Origin(topic=record.topic, partition=0, offset=1, key=record.key))
    [referral] = [o for o in outputs if o.topic == settings.names.egress(CS, Family.REFERRAL)]
    origin = Origin(topic=referral.topic, partition=0, offset=7, key=referral.key)
    refused = worker.admit(referral.value, origin)
    assert isinstance(refused, Output)
    assert dict(refused.headers)[DLQ_REASON] == b"wrong-recipient"

    assert worker.current_topics()  # the next round of the loop sees the change, reloads keys, retries
    store = open_queue_store(settings)
    try:
        items = store.items(CS, queue_opener(settings))
    finally:
        store.close()
    assert len(items) == 1
    assert items[0].referral is not None
    assert len(facts) == 1, "one delivery fact"
    assert isinstance(worker.admit(referral.value, origin), ReferralArrival), "the fresh keyring opens it"


def test_the_router_retries_an_incident_whose_new_signing_key_it_had_not_seen_yet(
    settings: Settings, partnership: Partnership,
) -> None:
    """
    The police rotated and published; the router's directory had not caught up: ``unknown-sender`` at first.

    With the next record after its directory changed, the held incident is routed too (its decisions and
    shares travel with that record's outputs, so they are durable before its offset is committed).
    """
    handler = build_handler(settings, clock=lambda: FIXED_NOW)
    stale = partnership.store.load_directory(now=FIXED_NOW)
    agency_admin.rotate_keys(partnership.store, POLICE, now=datetime.now(UTC))
    fresh = partnership.store.load_directory(now=FIXED_NOW)
    shown = [stale]
    handler.directory = lambda: shown[0]
    publisher = build_police_publisher(settings, clock=lambda: FIXED_NOW)  # signs with the new key
    incident = _high_risk_incident()
    later = _high_risk_incident().model_copy(update={"police_reference": "NDP-2026-000779"})
    first = publisher.seal_incident(incident)
    [refused] = handler.handle(first.value, Origin(topic=first.topic, partition=0, offset=1, key=first.key))
    assert dict(refused.headers)[DLQ_REASON] == b"unknown-sender"

    def decided_about(outputs: list[Output]) -> set[str]:
        return {json.loads(o.value).get("about_event_id") for o in outputs if o.topic == settings.names.audit}

    shown[0] = fresh
    second = publisher.seal_incident(later)
    outputs = handler.handle(second.value, Origin(topic=second.topic, partition=0, offset=2, key=second.key))
    assert {incident.event_id, later.event_id} <= decided_about(outputs)
    third = publisher.seal_incident(_high_risk_incident().model_copy(update={"police_reference": "NDP-2026-000780"}))
    again = handler.handle(third.value, Origin(topic=third.topic, partition=0, offset=3, key=third.key))
    assert incident.event_id not in decided_about(again), "retried once, not at every record"


def test_a_running_inbox_opens_alerts_sealed_after_its_school_rotated_keys(
    settings: Settings, partnership: Partnership,
) -> None:
    """The web inbox's opener, built before a rotation, opens the next alert (new key) and the earlier one."""
    open_alert = inbox_opener(settings)

    def alert_for_900101(reference: str) -> Output:
        record = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(
            _high_risk_incident().model_copy(update={"police_reference": reference}))
        outputs = build_handler(settings, clock=lambda: FIXED_NOW).handle(
            record.value, Origin(topic=record.topic, partition=0, offset=1, key=record.key))
        return next(o for o in outputs if o.topic == settings.names.egress("school-900101"))

    before = alert_for_900101("NDP-2026-000781")
    assert open_alert("900101", before.value) is not None
    agency_admin.rotate_keys(partnership.store, "school-900101", now=datetime.now(UTC))
    after = alert_for_900101("NDP-2026-000782")
    assert open_alert("900101", after.value) is not None, "sealed for the new key"
    assert open_alert("900101", before.value) is not None, "sealed for the superseded key"


def test_the_sequencer_appends_a_fact_whose_new_service_key_arrives_after_it(
    settings: Settings, partnership: Partnership,
) -> None:
    """
    A service added while the sequencer runs: its first fact is dead-lettered (``unknown-fact-signer``), then
    appended once its directory entry arrives; before that, nothing is appended for it.
    """
    sequencer = build_audit_sequencer(settings, clock=lambda: FIXED_NOW)
    producer = KeepingProducer()
    sequencer._producer = producer
    sequencer._head = lambda _topic: None  # no broker: the leaves and checkpoint topics start empty
    service = PrivateKeys.generate("safebus-new-service")
    fact = FactSigner(keys=service, audit_topic=settings.names.audit).sign(delivered_fact(
        output_id="9a3c2f1e-0000-4000-8000-000000000001", recipient="school-900101",
        channel=DeliveryChannel.SCHOOL_INBOX, subjects=(), at=FIXED_NOW, audit_topic=settings.names.audit))
    record = Record(topic=fact.topic, partition=0, offset=3, key=fact.key, value=fact.value,
                    headers=dict(fact.headers))
    size = sequencer.ledger.size
    assert sequencer.sequence([record]) == []
    assert [dict(o.headers)[DLQ_REASON] for o in producer.sent] == [b"unknown-fact-signer"]
    sequencer._idle()
    assert sequencer.ledger.size == size, "no directory change: still unattributed"

    partnership.store.put_entry(sign_entry(new_entry(service, kind=AgencyKind.SERVICE, name="A new service",
                                                     now=datetime.now(UTC)), partnership.store.root_key()))
    sequencer._idle()
    assert sequencer.ledger.size == size + 1
    assert sequencer.ledger.index_of(json.loads(fact.value)["event_id"]) is not None

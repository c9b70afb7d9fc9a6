"""Referral delivery without a broker: what the queue worker admits or dead-letters, and the receipts it leads to."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from safebus.app.queue_wiring import build_queue_worker, queue_opener, receipt_publisher
from safebus.app.wiring import Settings, build_handler, build_police_publisher, key_service_for
from safebus.consumers.queues.receipts import publish_receipt, receipt_event_id, send_due_receipts
from safebus.consumers.queues.store import ReferralArrival
from safebus.consumers.queues.worker import QueueWorker
from safebus.directory import AgencyKind
from safebus.envelope import open_envelope, seal_event
from safebus.errors import BrokerError, ConfigError, EnvelopeError
from safebus.jcs import canonical_json
from safebus.keys import PublicKeys
from safebus.processors.agreements import load_agreements
from safebus.publisher import AgencyPublisher
from safebus.records import DLQ_REASON, DLQ_STAGE, Origin, Output, Record
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import Delivered
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
from safebus.schemas.sharing import ReferralReceived
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

NAMES = TopicNames(prefix="t")
CS, IDVA, MARAC = "northdale-childrens-services", "northdale-idva", "northdale-marac"


@pytest.fixture
def settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=NAMES)


@pytest.fixture
def delivered_facts() -> list[Output]:
    """The delivery facts the worker hands to the audit topic."""
    return []


@pytest.fixture
def worker(settings: Settings, delivered_facts: list[Output]) -> QueueWorker:
    """A worker that never connects: these tests call `admit` and `deliver` without rejections."""
    built = build_queue_worker(settings, clock=lambda: FIXED_NOW)
    built.publish_audit = delivered_facts.extend
    return built


@pytest.fixture
def referrals(settings: Settings) -> dict[str, Output]:
    """The router's referral records for a high-risk incident with a child: by recipient agency id."""
    incident = DomesticAbuseIncident(
        **event_metadata(DomesticAbuseIncident, producer="northdale-police", occurred_at=FIXED_NOW - timedelta(hours=2),
                         recorded_at=FIXED_NOW - timedelta(hours=1)),
        police_reference="NDP-2026-000777", incident_at=FIXED_NOW - timedelta(hours=2),
        crime_status=CrimeStatus.CRIME, risk_grade=RiskGrade.HIGH, risk_tool=RiskTool.DASH,
        adults=(Adult(first_name="Vera", surname="Holloway", role=AdultRole.VICTIM, relationship=Relationship.PARENT,
                      date_of_birth=date(1990, 6, 1)),
                Adult(first_name="Otis", surname="Pemberton", role=AdultRole.SUSPECT,
                      relationship=Relationship.PARENTS_PARTNER)),
        children=(Child(first_name="Wren", surname="Holloway", date_of_birth=date(2017, 5, 2), present=True,
                        school_urn="900101"),),
        narrative="Synthetic narrative.",
    )
    record = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(incident)
    outputs = build_handler(settings, clock=lambda: FIXED_NOW).handle(
        record.value, Origin(topic=record.topic, partition=0, offset=1, key=record.key))
    found = {o.topic.split(".")[2]: o for o in outputs if o.topic.endswith(f".{Family.REFERRAL.value}")}
    assert set(found) == {CS, IDVA, MARAC}
    return found


def _record(output: Output, offset: int = 5) -> Record:
    """The record a consumer would read back for `output`."""
    return Record(topic=output.topic, partition=0, offset=offset, key=output.key, value=output.value,
                  headers=dict(output.headers))


def _public(partnership: Partnership, agency_id: str) -> PublicKeys:
    agency = partnership.directory.get(agency_id)
    assert agency is not None
    return agency.public_keys()


def _origin(output: Output, topic: str | None = None) -> Origin:
    return Origin(topic=topic or output.topic, partition=0, offset=5, key=output.key)


def _reason(outcome: ReferralArrival | Output) -> tuple[str, str]:
    assert isinstance(outcome, Output), "expected a dead letter"
    headers = {k: v.decode() for k, v in outcome.headers}
    return headers[DLQ_REASON], headers[DLQ_STAGE]


def test_each_agency_queue_gets_its_referral_with_exactly_its_clause_fields(
    worker: QueueWorker, referrals: dict[str, Output], settings: Settings, delivered_facts: list[Output],
) -> None:
    """Delivered referrals open for their own agency and hold precisely the fields of the deciding clause."""
    records = [_record(o) for o in referrals.values()]
    assert worker.deliver(records) == 3
    assert worker.deliver(records) == 0, "a redelivered batch adds nothing"
    facts = [Delivered.model_validate_json(o.value) for o in delivered_facts]
    assert {f.recipient for f in facts} == {CS, IDVA, MARAC}
    assert len({f.event_id for f in facts}) == 3, "a redelivery is the same audit fact (same id), logged once"
    assert all(o.topic == NAMES.audit for o in delivered_facts)
    assert all(o.value == canonical_json(json.loads(o.value)) for o in delivered_facts), "facts are RFC 8785 bytes"
    rules = {(a.id, r.clause): r for a in load_agreements() for r in a.rules}
    opener = queue_opener(settings)
    for agency_id in (CS, IDVA, MARAC):
        [item] = worker.store.items(agency_id, opener)
        assert item.referral is not None
        clause = item.referral.clause.split()[0]
        rule = rules[(item.referral.agreement_id, clause)]
        assert set(item.referral.released) == set(rule.fields)
    [cs] = worker.store.items(CS, opener)
    assert cs.referral is not None
    assert "victim" not in cs.referral.released
    assert "Vera" not in cs.referral.model_dump_json()


def test_a_referral_copied_onto_another_agencys_topic_is_dead_lettered(
    worker: QueueWorker, referrals: dict[str, Output],
) -> None:
    """The IDVA's referral replayed onto MARAC's topic is refused at stage deliver, not stored for MARAC."""
    marac_topic = NAMES.egress(MARAC, Family.REFERRAL)
    outcome = worker.admit(referrals[IDVA].value, _origin(referrals[IDVA], marac_topic))
    assert _reason(outcome) == ("wrong-topic", "deliver")


def test_a_referral_naming_another_recipient_is_misaddressed(
    worker: QueueWorker, referrals: dict[str, Output], partnership: Partnership, settings: Settings,
) -> None:
    """Genuinely sealed by the router for the IDVA, on the IDVA's topic, but addressed to MARAC: dead-lettered."""
    opener = queue_opener(settings)
    original = opener(IDVA, referrals[IDVA].value)
    assert original is not None
    wrong = original.model_copy(update={"recipient": MARAC})
    topic = NAMES.egress(IDVA, Family.REFERRAL)
    keys = key_service_for(partnership.state_dir)
    sealed = seal_event(wrong, sender=partnership.router, recipient=_public(partnership, IDVA), topic=topic,
                        now=FIXED_NOW,
                        subject_keys=[keys.subject_key(t, "2026-11") for t in original.subjects])
    assert _reason(worker.admit(sealed, Origin(topic=topic, partition=0, offset=9))) == ("misaddressed", "deliver")


def test_a_referral_opens_as_the_type_its_signed_header_names_whatever_its_text_says(
    referrals: dict[str, Output], partnership: Partnership, settings: Settings,
) -> None:
    """A referral whose text is another event type's name still opens as a referral: the model is the header's."""
    opener = queue_opener(settings)
    original = opener(CS, referrals[CS].value)
    assert original is not None
    quoting = original.model_copy(update={"purpose": "sharing.case-referral"})
    topic = NAMES.egress(CS, Family.REFERRAL)
    keys = key_service_for(partnership.state_dir)
    sealed = seal_event(quoting, sender=partnership.router, recipient=_public(partnership, CS), topic=topic,
                        now=FIXED_NOW, subject_keys=[keys.subject_key(t, "2026-11") for t in original.subjects])
    opened = opener(CS, sealed)
    assert opened is not None
    assert opened.event_type == "sharing.referral"
    assert opened.purpose == quoting.purpose


def test_a_referral_not_signed_by_the_router_is_refused(
    worker: QueueWorker, referrals: dict[str, Output], partnership: Partnership, settings: Settings,
) -> None:
    """Only the router may put referrals in a queue: the police signing one directly is an unknown sender."""
    original = queue_opener(settings)(CS, referrals[CS].value)
    assert original is not None
    topic = NAMES.egress(CS, Family.REFERRAL)
    forged = seal_event(original, sender=partnership.police, recipient=_public(partnership, CS), topic=topic,
                        now=FIXED_NOW)
    assert _reason(worker.admit(forged, Origin(topic=topic, partition=0, offset=3))) == ("unknown-sender", "deliver")


def test_only_referral_recipients_have_queues(settings: Settings) -> None:
    """A school (or the police) has no referral queue: asking for one is a configuration error, not empty."""
    with pytest.raises(ConfigError, match=r"only .* have a referral queue"):
        receipt_publisher(settings, "school-900101")
    with pytest.raises(ConfigError, match="no agency"):
        receipt_publisher(settings, "nowhere-services")


class _RecordingPublisher(AgencyPublisher):
    """Seals for real, 'publishes' into a list; fails once on request, as a broker outage would."""

    sent: list[Output]
    fail_next: bool

    def publish_outputs(self, outputs: list[Output]) -> list[str]:
        if self.fail_next:
            self.fail_next = False
            raise BrokerError("broker unavailable")
        self.sent.extend(outputs)
        return [dict(o.headers)["safebus.event_id"].decode() for o in outputs]


def _publisher(settings: Settings, agency_id: str) -> _RecordingPublisher:
    base = receipt_publisher(settings, agency_id, clock=lambda: FIXED_NOW)
    publisher = _RecordingPublisher(bootstrap="127.0.0.1:1", agency=base.agency, kind=base.kind, router=base.router,
                                    names=base.names, tokeniser=base.tokeniser, keys=base.keys, clock=base.clock)
    publisher.sent, publisher.fail_next = [], False
    return publisher


def test_taking_sends_one_receipt_sealed_for_the_router_and_none_on_a_second_take(
    worker: QueueWorker, referrals: dict[str, Output], settings: Settings, partnership: Partnership,
) -> None:
    """The receipt names the referral, the agency and the practitioner, on the agency's receipt topic; only once."""
    worker.deliver([_record(referrals[CS])])
    [item] = worker.store.items(CS, queue_opener(settings))
    publisher = _publisher(settings, CS)
    assert worker.store.take(CS, item.referral_id, "MASH-04", FIXED_NOW + timedelta(minutes=7))
    [event_id] = send_due_receipts(worker.store, publisher, clock=lambda: FIXED_NOW)
    assert event_id == receipt_event_id(CS, item.referral_id)
    [output] = publisher.sent
    assert output.topic == f"t.ingress.{CS}.receipt"
    assert output.key == item.referral_id.encode()
    opened = open_envelope(output.value, recipient=partnership.store.keyring(partnership.directory.router().id),
                           senders=partnership.directory, topic=output.topic)
    assert opened.header["data_key_id"] == "", "a receipt holds no personal data, so no subject key"
    receipt = ReferralReceived.model_validate_json(opened.plaintext)
    assert (receipt.referral_id, receipt.recipient, receipt.received_by, receipt.producer) == (
        item.referral_id, CS, "MASH-04", CS)
    assert receipt.received_at == FIXED_NOW + timedelta(minutes=7)
    assert item.referral is not None
    assert receipt.correlation_id == item.referral.event_id

    assert worker.store.take(CS, item.referral_id, "MASH-09", FIXED_NOW + timedelta(minutes=9)) is False
    assert send_due_receipts(worker.store, publisher, clock=lambda: FIXED_NOW) == []
    assert len(publisher.sent) == 1


def test_a_receipt_that_failed_to_publish_is_sent_by_the_next_attempt(
    worker: QueueWorker, referrals: dict[str, Output], settings: Settings,
) -> None:
    """A broker outage after the take loses nothing: the receipt stays due and goes out, unchanged, next time."""
    worker.deliver([_record(referrals[IDVA])])
    [item] = worker.store.items(IDVA, queue_opener(settings))
    publisher = _publisher(settings, IDVA)
    publisher.fail_next = True
    worker.store.take(IDVA, item.referral_id, "IDVA-02", FIXED_NOW)
    with pytest.raises(BrokerError):
        send_due_receipts(worker.store, publisher, clock=lambda: FIXED_NOW)
    assert [t.referral_id for t in worker.store.receipts_due(IDVA)] == [item.referral_id]
    assert send_due_receipts(worker.store, publisher, clock=lambda: FIXED_NOW) == [
        receipt_event_id(IDVA, item.referral_id)]
    assert worker.store.receipts_due(IDVA) == []


def test_an_agency_cannot_publish_another_agencys_receipt(
    worker: QueueWorker, referrals: dict[str, Output], settings: Settings,
) -> None:
    """MARAC's publisher refuses a take recorded in the IDVA's queue: a receipt speaks only for its sender."""
    worker.deliver([_record(referrals[IDVA])])
    worker.store.take(IDVA, next(iter(worker.store.referral_ids(IDVA))), "IDVA-02", FIXED_NOW)
    [due] = worker.store.receipts_due(IDVA)
    with pytest.raises(EnvelopeError):
        publish_receipt(_publisher(settings, MARAC), due)


def test_an_agency_kind_without_a_referral_topic_has_no_queue(partnership: Partnership) -> None:
    """The hosted set follows the topic registry: schools and the router are never hosted (police: MARAC actions)."""
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=NAMES)
    hosted = build_queue_worker(settings).recipients.values()
    kinds = {r.agency.kind for r in hosted}
    assert kinds == {AgencyKind.CHILDRENS_SERVICES, AgencyKind.DA_HUB, AgencyKind.IDVA, AgencyKind.MARAC,
                     AgencyKind.HEALTH, AgencyKind.POLICE}


def test_erasing_the_victim_reaches_the_queues(
    worker: QueueWorker, referrals: dict[str, Output], settings: Settings, partnership: Partnership,
) -> None:
    """Destroying the victim's data keys makes the stored referrals about her unreadable; they stay listed."""
    worker.deliver([_record(o) for o in referrals.values()])
    token = partnership.tokeniser.person(first_name="Vera", surname="Holloway", date_of_birth=date(1990, 6, 1))
    assert key_service_for(partnership.state_dir).erase_subject(token)
    opener = queue_opener(settings)
    for agency_id in (IDVA, MARAC):
        [item] = worker.store.items(agency_id, opener)
        assert item.referral is None
        assert "Vera" not in "\n".join(item.describe())

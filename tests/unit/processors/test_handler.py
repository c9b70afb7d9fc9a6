"""The processor's per-record work: shares for schools, decisions for the audit, dead letters for the rest."""

from __future__ import annotations

import json

import pytest

from safebus.app.wiring import Settings, build_handler, build_police_publisher, key_service_for
from safebus.directory import AgencyKind
from safebus.envelope import open_envelope, seal
from safebus.errors import InvalidEnvelope
from safebus.jcs import canonical_json
from safebus.processors.handler import IncidentHandler
from safebus.producers.police import PolicePublisher
from safebus.producers.synthetic import IncidentFactory, corrupted_records
from safebus.records import DLQ_ORIGIN_KEY, DLQ_REASON, DLQ_STAGE, EVENT_ID, Origin, Output
from safebus.schemas.decision import SharingDecision
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.registry import Family
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

NAMES = TopicNames(prefix="t")


@pytest.fixture
def handler(partnership: Partnership) -> IncidentHandler:
    settings = Settings(state_dir=partnership.state_dir, bootstrap="unused:9092", names=NAMES)
    return build_handler(settings, clock=lambda: FIXED_NOW)


@pytest.fixture
def publisher(partnership: Partnership) -> PolicePublisher:
    """A publisher used only to seal records (it never connects in these tests)."""
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=NAMES)
    return build_police_publisher(settings, clock=lambda: FIXED_NOW)


def _origin(output: Output, offset: int = 7) -> Origin:
    return Origin(topic=output.topic, partition=0, offset=offset, key=output.key)


def _headers(output: Output) -> dict[str, str]:
    return {k: v.decode() for k, v in output.headers}


class TestValidIncident:
    def test_shares_go_to_each_schools_own_topic_readable_only_by_that_school(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory,
        partnership: Partnership,
    ) -> None:
        """Each share is sealed for its school; other schools cannot open it."""
        record = publisher.seal_incident(factory.incident("schools"))
        outputs = handler.handle(record.value, _origin(record))
        shares = [o for o in outputs if o.topic.endswith(".encompass-notification")]
        assert shares
        schools = partnership.directory.of_kind(AgencyKind.SCHOOL)
        for share in shares:
            owner = next(s for s in schools if share.topic == NAMES.egress(s.id))
            opened = open_envelope(share.value, recipient=partnership.keys(owner.id),
                                   senders={"safebus-router": partnership.router.public()}, topic=share.topic,
                                   subject_keys=key_service_for(partnership.state_dir).lookup)
            notification = EncompassNotification.model_validate_json(opened.plaintext)
            assert notification.setting_urn == owner.urn
            assert share.key.decode() == notification.notification_id
            for other in schools:
                if other.id != owner.id:
                    with pytest.raises(InvalidEnvelope):
                        open_envelope(share.value, recipient=partnership.keys(other.id),
                                      senders={"safebus-router": partnership.router.public()},
                                      subject_keys=key_service_for(partnership.state_dir).lookup)

    def test_every_child_has_an_audited_decision_with_no_personal_data(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory
    ) -> None:
        """Each child gets an Operation Encompass decision; every decision holds tokens and field names only."""
        incident = factory.incident("school-unknown")
        record = publisher.seal_incident(incident)
        outputs = handler.handle(record.value, _origin(record))
        audit = [o for o in outputs if o.topic == NAMES.audit]
        decisions = [SharingDecision.model_validate_json(o.value) for o in audit]
        per_child = [d for d in decisions if d.agreement_id == "operation-encompass" and d.clause.startswith("4.")]
        assert len(per_child) == len(incident.children)
        assert {d.outcome.value for d in per_child} == {"deferred"}
        assert {d.agreement_id for d in decisions} >= {"operation-encompass", "childrens-services-referral",
                                                        "domestic-abuse-hub", "marac-referral"}
        for output, decision in zip(audit, decisions, strict=True):
            assert decision.about_event_id == _headers(record)[EVENT_ID]
            assert output.value == canonical_json(json.loads(output.value)), "audit records are RFC 8785 bytes"
            text = output.value.decode()
            for child in incident.children:
                assert child.first_name not in text
                assert child.date_of_birth.isoformat() not in text
            assert incident.police_reference not in text

    def test_shares_precede_their_decisions(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory
    ) -> None:
        """A share is produced before the decision that records it, so a crash can only repeat, never lose."""
        record = publisher.seal_incident(factory.incident("schools"))
        topics = [o.topic for o in handler.handle(record.value, _origin(record))]
        last_share = max(i for i, t in enumerate(topics) if ".egress." in t)
        first_decision = min(i for i, t in enumerate(topics) if t == NAMES.audit)
        assert last_share < first_decision


class TestRejected:
    @pytest.mark.parametrize(
        ("reason", "stage"),
        [
            ("bad-signature", "verify"),
            ("malformed", "verify"),
            ("unknown-sender", "verify"),
            ("wrong-recipient", "decrypt"),
            ("schema-violation", "validate"),
        ],
    )
    def test_each_fault_becomes_one_dead_letter_with_its_reason(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory,
        partnership: Partnership, reason: str, stage: str,
    ) -> None:
        """A bad record yields exactly one dead letter: original bytes, reason, stage and origin."""
        school = partnership.directory.of_kind(AgencyKind.SCHOOL)[0].public_keys()
        bad = corrupted_records(publisher, factory, school=school)[reason]
        [output] = handler.handle(bad.value, _origin(bad, offset=42))
        assert output.topic == NAMES.deadletter
        assert output.value == bad.value
        headers = _headers(output)
        assert (headers[DLQ_REASON], headers[DLQ_STAGE]) == (reason, stage)
        assert headers["safebus.dlq.origin.offset"] == "42"
        assert headers[DLQ_ORIGIN_KEY] == bad.key.decode()

    def test_schema_violation_detail_names_fields_not_values(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory,
        partnership: Partnership,
    ) -> None:
        """The dead-letter detail says where the payload is wrong without quoting it."""
        school = partnership.directory.of_kind(AgencyKind.SCHOOL)[0].public_keys()
        bad = corrupted_records(publisher, factory, school=school)["schema-violation"]
        [output] = handler.handle(bad.value, _origin(bad))
        detail = _headers(output)["safebus.dlq.detail"]
        assert "police_reference" in detail
        assert "adults: missing" in detail
        assert "not a reference" not in detail
        assert "several" not in detail

    def test_a_bug_in_routing_dead_letters_instead_of_crashing(
        self, handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An unexpected exception is contained: the record is dead-lettered and the next one is processed."""
        record = publisher.seal_incident(factory.incident("schools"))

        def explode(*args: object, **kwargs: object) -> None:
            raise ZeroDivisionError

        with monkeypatch.context() as patch:
            patch.setattr(handler.router, "route", explode)
            [output] = handler.handle(record.value, _origin(record))
        assert _headers(output)[DLQ_REASON] == "internal-error"
        assert any(o.topic == NAMES.audit for o in handler.handle(record.value, _origin(record)))

    def test_wrong_event_type_is_rejected(
        self, handler: IncidentHandler, partnership: Partnership
    ) -> None:
        """A genuine envelope of another type on the incident topic is not treated as an incident."""
        topic = NAMES.ingress("northdale-police", Family.DA_INCIDENT)
        raw = seal(b"{}", sender=partnership.police, recipient=partnership.router.public(), event_id="e",
                   event_type="consent-recorded", schema_id="x", schema_version="1", topic=topic, now=FIXED_NOW)
        [output] = handler.handle(raw, Origin(topic=topic, partition=0, offset=1))
        assert _headers(output)[DLQ_REASON] == "unexpected-event-type"


def test_handler_outputs_are_deterministic(
    handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory
) -> None:
    """Handling the same record twice produces the same keys and decision ids (idempotent outputs)."""
    record = publisher.seal_incident(factory.incident("schools"))
    first, second = handler.handle(record.value, _origin(record)), handler.handle(record.value, _origin(record))
    assert [(o.topic, o.key) for o in first] == [(o.topic, o.key) for o in second]

    def decision_ids(outputs: list[Output]) -> list[str]:
        return [SharingDecision.model_validate_json(o.value).decision_id for o in outputs if o.topic == NAMES.audit]

    assert decision_ids(first) == decision_ids(second)
    assert len(set(decision_ids(first))) == len(decision_ids(first)) > 0


def test_payload_metadata_must_match_the_signed_header(
    handler: IncidentHandler, publisher: PolicePublisher, factory: IncidentFactory, partnership: Partnership
) -> None:
    """A payload claiming another event id or producer than its signed envelope is dead-lettered."""
    incident = factory.incident("schools")
    raw = seal(incident.model_dump_json().encode(), sender=partnership.police, recipient=partnership.router.public(),
               event_id="11111111-2222-4333-8444-555555555555", event_type=incident.event_type,
               schema_id=incident.schema_id(), schema_version=incident.schema_version, topic=publisher.topic,
               now=FIXED_NOW)
    [output] = handler.handle(raw, Origin(topic=publisher.topic, partition=0, offset=1))
    assert _headers(output)[DLQ_REASON] == "metadata-mismatch"
    assert _headers(output)["safebus.dlq.detail"] == "event_id"

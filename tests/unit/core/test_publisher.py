"""Any agency's events are sealed under the keys of everyone they are about, on the right topic."""

from __future__ import annotations

import pytest

from safebus.app.wiring import key_service_for
from safebus.directory import AgencyKind
from safebus.envelope import open_envelope, peek_header
from safebus.errors import EnvelopeError, InvalidEnvelope
from safebus.publisher import AgencyPublisher, subject_tokens
from safebus.schemas.examples import EXAMPLES
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership


def _publisher(partnership: Partnership, agency_id: str, kind: AgencyKind) -> AgencyPublisher:
    return AgencyPublisher(bootstrap="127.0.0.1:1", agency=partnership.keys(agency_id), kind=kind,
                           router=partnership.router.public(), names=TopicNames(), tokeniser=partnership.tokeniser,
                           keys=key_service_for(partnership.state_dir), clock=lambda: FIXED_NOW)


def test_everyone_named_in_an_event_becomes_a_subject(partnership: Partnership) -> None:
    """Victim, perpetrators and children of a MARAC referral are all subjects; consent names its subject directly."""
    referral = EXAMPLES["marac.referral-submitted"]()
    assert len(subject_tokens(referral, partnership.tokeniser)) == 3  # victim, one perpetrator, one child
    consent = EXAMPLES["consent.recorded"]()
    assert subject_tokens(consent, partnership.tokeniser) == consent.subjects


def test_sealed_event_needs_every_subjects_key(partnership: Partnership) -> None:
    """The envelope lists one data key per subject, and the router reads it only with all of them."""
    publisher = _publisher(partnership, "northdale-idva", AgencyKind.IDVA)
    record = publisher.seal(EXAMPLES["marac.referral-submitted"]())
    assert record.topic == "safebus.ingress.northdale-idva.marac"
    header = peek_header(record.value)
    assert header is not None
    assert len(header["data_key_id"].split(",")) == 3
    lookup = key_service_for(partnership.state_dir).lookup
    opened = open_envelope(record.value, recipient=partnership.router,
                           senders=partnership.directory.public_keys(), subject_keys=lookup)
    assert b"Calloway" in opened.plaintext
    missing_one = header["data_key_id"].split(",")[1]
    with pytest.raises(InvalidEnvelope, match="subject-key-unavailable"):
        open_envelope(record.value, recipient=partnership.router, senders=partnership.directory.public_keys(),
                      subject_keys=lambda key_id: None if key_id == missing_one else lookup(key_id))


def test_an_agency_may_publish_only_its_kinds_contracts(partnership: Partnership) -> None:
    """A school cannot publish a police incident, whatever it sends."""
    school = _publisher(partnership, "school-900101", AgencyKind.SCHOOL)
    with pytest.raises(EnvelopeError, match=r"does not publish police\.domestic-abuse-incident"):
        school.seal(EXAMPLES["police.domestic-abuse-incident"]())
    assert school.topic_for("encompass.acknowledged") == "safebus.ingress.school-900101.encompass-ack"

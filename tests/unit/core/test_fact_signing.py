"""
Who wrote an audit fact: each partnership component signs its facts with a key in the signed directory.

Anyone who can reach the broker can write to the audit topic.  The sequencer
must be able to tell which component produced a fact before it becomes a
leaf: the router or one of the partnership's services, with a key the
directory accepts, over exactly these bytes on exactly this topic.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from safebus.app.agency_admin import revoke_key
from safebus.directory import AgencyKind, Directory, PartnershipStore
from safebus.fact_signing import (
    FACT_SIGNATURE,
    FactSigner,
    Service,
    UnattributedFact,
    fact_signer,
    verify_fact,
)
from safebus.keys import PrivateKeys
from safebus.producers.synthetic import ROUTER_ID, create_partnership
from safebus.records import Output, Record
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW

NAMES = TopicNames(prefix="facts")
VALUE = b'{"event_type": "audit.viewed", "event_id": "00000000-0000-4000-8000-000000000001"}'


@pytest.fixture
def partnership(tmp_path: Path) -> tuple[PartnershipStore, Directory]:
    store = PartnershipStore(tmp_path)
    return store, create_partnership(store, now=FIXED_NOW)


def _record(output: Output) -> Record:
    return Record(topic=output.topic, partition=0, offset=7, key=output.key, value=output.value,
                  headers=dict(output.headers))


def _fact(topic: str = NAMES.audit) -> Output:
    return Output(topic=topic, key=b"k", value=VALUE)


def _reason(record: Record, directory: Directory) -> str:
    with pytest.raises(UnattributedFact) as caught:
        verify_fact(record, directory)
    return caught.value.reason


def test_every_partnership_service_and_the_router_has_a_fact_key_in_the_directory(
        partnership: tuple[PartnershipStore, Directory]) -> None:
    """`create_partnership` lists each service (inbox and queue workers, monitor, gateway, web apps, CLI)."""
    store, directory = partnership
    services = {a.id for a in directory.of_kind(AgencyKind.SERVICE)}
    assert services == {s.agency_id for s in Service}
    assert {"safebus-inbox-worker", "safebus-queue-worker", "safebus-deadline-monitor", "safebus-gateway",
            "safebus-inbox-web", "safebus-audit-web"} <= services
    for signer in [*Service, ROUTER_ID]:
        signed = fact_signer(store, signer, audit_topic=NAMES.audit).sign(_fact())
        assert verify_fact(_record(signed), directory) == (signer.agency_id if isinstance(signer, Service)
                                                           else signer)


def test_an_unsigned_fact_is_not_attributable(partnership: tuple[PartnershipStore, Directory]) -> None:
    """What a plain Kafka client writes carries no signature."""
    assert _reason(_record(_fact()), partnership[1]) == "unsigned-fact"


def test_a_key_the_directory_does_not_hold_is_refused(partnership: tuple[PartnershipStore, Directory]) -> None:
    """A fresh key claiming to be the inbox worker, and a signer the directory has never heard of."""
    directory = partnership[1]
    impostor = FactSigner(keys=PrivateKeys.generate(Service.INBOX_WORKER.agency_id), audit_topic=NAMES.audit)
    assert _reason(_record(impostor.sign(_fact())), directory) == "unknown-fact-signer"
    stranger = FactSigner(keys=PrivateKeys.generate("safebus-stranger"), audit_topic=NAMES.audit)
    assert _reason(_record(stranger.sign(_fact())), directory) == "unknown-fact-signer"


def test_a_member_agency_cannot_sign_facts_even_with_its_real_key(
        partnership: tuple[PartnershipStore, Directory]) -> None:
    """Schools and the police send events to the router; they do not write the partnership's audit trail."""
    store, directory = partnership
    school = directory.of_kind(AgencyKind.SCHOOL)[0]
    signed = FactSigner(keys=store.private_keys(school.id), audit_topic=NAMES.audit).sign(_fact())
    assert _reason(_record(signed), directory) == "unknown-fact-signer"


def test_a_changed_byte_or_another_topic_breaks_the_signature(
        partnership: tuple[PartnershipStore, Directory]) -> None:
    """The signature covers the value's exact bytes and the topic it was written to."""
    store, directory = partnership
    signed = _record(fact_signer(store, Service.AUDIT_WEB, audit_topic=NAMES.audit).sign(_fact()))
    assert _reason(replace(signed, value=signed.value.replace(b"viewed", b"VIEWED")), directory) == (
        "bad-fact-signature")
    assert _reason(replace(signed, topic="facts.audit.other"), directory) == "bad-fact-signature"
    garbled = {**signed.headers, FACT_SIGNATURE: b"not base64url!"}
    assert _reason(replace(signed, headers=garbled), directory) == "bad-fact-signature"


def test_a_revoked_service_key_is_refused(partnership: tuple[PartnershipStore, Directory]) -> None:
    """Revoking a compromised service key (`safebus agency revoke`) stops its facts being logged."""
    store, _ = partnership
    signer = fact_signer(store, Service.QUEUE_WORKER, audit_topic=NAMES.audit)
    revoke_key(store, Service.QUEUE_WORKER.agency_id, signer.keys.public().signing_key_id, now=FIXED_NOW)
    assert _reason(_record(signer.sign(_fact())), store.load_directory(now=FIXED_NOW)) == "revoked-key"


def test_only_audit_topic_records_are_signed(partnership: tuple[PartnershipStore, Directory]) -> None:
    """A router batch mixes shares, dead letters and facts: only the facts get signature headers."""
    signer = fact_signer(partnership[0], ROUTER_ID, audit_topic=NAMES.audit)
    share = _fact(topic=NAMES.deadletter)
    assert signer.sign(share) == share
    resigned = signer.sign(signer.sign(_fact()))
    assert sum(name == FACT_SIGNATURE for name, _ in resigned.headers) == 1

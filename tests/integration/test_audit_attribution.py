"""
On a real broker: only facts a partnership component signed become leaves of the audit log.

Issue 11: a fact written to the audit topic with a plain Kafka client became a
signed leaf and ``audit verify`` passed.  Now the sequencer appends a fact
only when its signature verifies against a router or service key in the
signed directory; an unsigned fact, or one signed by a key the directory does
not hold, becomes a dead letter — which is itself logged, without its content.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from confluent_kafka import Producer

from safebus.app.wiring import open_ledger
from safebus.consumers.audit.reports import Viewer, viewed_fact
from safebus.fact_signing import FactPublisher, FactSigner, Service, fact_publisher
from safebus.kafka_io import reliable_producer
from safebus.kafka_security import client_config
from safebus.keys import PrivateKeys
from safebus.records import EVENT_ID, Output
from safebus.schemas.police import Child
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def sequenced_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus with the audit sequencer running."""
    os.environ["SAFEBUS_CHECKPOINT_SECONDS"] = "1"
    try:
        with running_bus(kafka, tmp_path_factory.mktemp("attribution"), prefix=f"f{uuid.uuid4().hex[:10]}") as bus:
            bus.start("sequencer")
            yield bus
    finally:
        os.environ.pop("SAFEBUS_CHECKPOINT_SECONDS", None)


def _view(bus: Bus, viewer: str) -> Output:
    """A well-formed `audit.viewed` fact on the audit topic (valid against its contract)."""
    fact = viewed_fact(viewer=Viewer(user_id=viewer, role="auditor"), view="cli/query", parameters={}, results=0,
                       at=datetime.now(UTC))
    return Output(topic=bus.names.audit, key=fact.event_id.encode(), value=fact.model_dump_json().encode(),
                  headers=((EVENT_ID, fact.event_id.encode()),))


def _logged(bus: Bus) -> dict[str, dict[str, object]]:
    ledger = open_ledger(bus.settings, read_only=True)
    try:
        return {leaf.fact_id: json.loads(leaf.body) for leaf in ledger.leaves()}
    finally:
        ledger.close()


def test_unsigned_and_impostor_facts_are_dead_letters_and_each_service_is_logged(sequenced_bus: Bus) -> None:
    """A plain producer's fact and one signed by an unknown key are refused; every service's signed fact is a leaf."""
    bus = sequenced_bus
    unsigned, impostor = _view(bus, "plain-client"), _view(bus, "impostor")
    plain = Producer(client_config(bus.settings.bootstrap))  # what anyone with a Kafka client can do
    plain.produce(unsigned.topic, key=unsigned.key, value=unsigned.value, headers=list(unsigned.headers))
    assert plain.flush(30) == 0
    forged_key = FactSigner(keys=PrivateKeys.generate(Service.INBOX_WORKER.agency_id), audit_topic=bus.names.audit)
    FactPublisher(forged_key, reliable_producer(bus.settings.bootstrap)).publish([impostor])
    router = bus.store.load_directory().router().id
    genuine = {}
    for signer in [*Service, router]:
        name = signer.agency_id if isinstance(signer, Service) else signer
        fact = _view(bus, f"from-{name}")
        fact_publisher(bus.store, signer, audit_topic=bus.names.audit, bootstrap=bus.settings.bootstrap).publish(
            [fact])
        genuine[fact.key.decode()] = name
    refused = {hashlib.sha256(unsigned.value).hexdigest(): "unsigned-fact",
               hashlib.sha256(impostor.value).hexdigest(): "unknown-fact-signer"}

    def settled() -> dict[str, dict[str, object]] | None:
        facts = _logged(bus)
        dead = {f.get("content_sha256"): f.get("reason") for f in facts.values()
                if f["event_type"] == "audit.dead-lettered" and f.get("stage") == "audit-sequence"}
        ready = set(genuine) <= set(facts) and all(dead.get(k) == v for k, v in refused.items())
        return facts if ready else None

    facts = wait_for(settled, timeout_s=90, what="every signed fact appended and both forgeries dead-lettered")
    assert not {unsigned.key.decode(), impostor.key.decode()} & set(facts), "an unattributable fact became a leaf"
    assert {facts[k]["viewer"] for k in genuine} == {f"from-{n}" for n in genuine.values()}
    letters = {hashlib.sha256(r.value).hexdigest(): r.header("safebus.dlq.reason")
               for r in bus.topic(bus.names.deadletter) if r.header("safebus.dlq.stage") == "audit-sequence"}
    assert {k: letters.get(k) for k in refused} == refused  # the original bytes are kept for review


def test_the_bus_own_facts_are_all_attributed(sequenced_bus: Bus) -> None:
    """Decisions, deliveries and the rule set of a running bus are signed: none of them is dead-lettered."""
    bus = sequenced_bus
    [event] = bus.publisher().publish([make_incident(Child(first_name="Ned", surname="Garside",
                                                           date_of_birth=date(2016, 4, 4), present=True,
                                                           school_urn="900101"))])

    def logged() -> dict[str, dict[str, object]] | None:
        facts = _logged(bus)
        kinds = {f["event_type"] for f in facts.values()}
        decided = any(f.get("about_event_id") == event for f in facts.values())
        return facts if decided and {"audit.delivered", "audit.ruleset-loaded"} <= kinds else None

    wait_for(logged, timeout_s=90, what="the decision, the delivery and the rule set in the log")
    unattributed = [r for r in bus.topic(bus.names.deadletter) if r.header("safebus.dlq.stage") == "audit-sequence"
                    and r.header("safebus.dlq.origin.topic") == bus.names.audit
                    and r.header("safebus.dlq.reason") in ("unsigned-fact", "unknown-fact-signer",
                                                           "bad-fact-signature")]
    assert {r.value for r in unattributed} <= _forgeries(bus)


def _forgeries(bus: Bus) -> set[bytes]:
    """The values the first test forged on purpose (viewers 'plain-client' and 'impostor')."""
    return {r.value for r in bus.topic(bus.names.audit)
            if b'"plain-client"' in r.value or b'"impostor"' in r.value}

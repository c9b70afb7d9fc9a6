"""The thin path on a real broker: police incident → router → school inbox, with audit and dead letters."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime

import pytest

from safebus.app.wiring import key_service_for
from safebus.directory import AgencyKind
from safebus.envelope import open_envelope
from safebus.producers.synthetic import IncidentFactory, corrupted_records
from safebus.records import DLQ_ORIGIN_KEY, DLQ_REASON, DLQ_STAGE
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.police import (
    Adult,
    AdultRole,
    Child,
    Relationship,
    RiskGrade,
)
from safebus.schemas.registry import Family
from tests.integration.conftest import Bus, make_incident, wait_for

pytestmark = pytest.mark.kafka




def test_incident_becomes_the_schools_encompass_alert(bus: Bus) -> None:
    """A child at a partnership school appears in that school's inbox with exactly the Encompass fields."""
    child = Child(first_name="Wren", surname="Quarrie", date_of_birth=date(2017, 5, 2), present=True,
                  school_urn="900101")
    incident = make_incident(child)
    [event_id] = bus.publisher().publish([incident])

    decisions = wait_for(lambda: bus.encompass({event_id}), what=f"a decision for {event_id}\n{bus.log('processor')}")
    [decision] = decisions.values()
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900101")
    assert decision.output_id is not None
    alert = wait_for(lambda: bus.notification("900101", decision.output_id or ""),
                     what=f"the alert\n{bus.log('inbox')}")
    assert (alert.child_first_name, alert.child_surname, alert.child_date_of_birth) == ("Wren", "Quarrie",
                                                                                        date(2017, 5, 2))
    assert alert.police_reference == incident.police_reference
    assert alert.child_present is True

    shown = subprocess.run(
        [sys.executable, "-m", "safebus", "inbox", "show", "--school", "900101"],
        env={**os.environ, "SAFEBUS_HOME": str(bus.settings.state_dir)}, capture_output=True, text=True, check=True,
    ).stdout
    assert "Hollowmere Primary School" in shown
    assert f"Wren Quarrie (born 2017-05-02) · police ref {incident.police_reference}" in shown


def test_tampered_event_is_dead_lettered_and_the_processor_keeps_going(bus: Bus) -> None:
    """A forged signature lands in the dead-letter topic with its reason; later good events still flow."""
    publisher = bus.publisher()
    directory = bus.store.load_directory()
    bad = corrupted_records(publisher, IncidentFactory(random.Random(7), now=datetime.now(UTC)),
                            school=directory.of_kind(AgencyKind.SCHOOL)[0].public_keys())
    publisher.publish_raw([bad["bad-signature"], bad["malformed"]])
    [good_event] = publisher.publish([make_incident(Child(first_name="Kit", surname="Lowther",
                                                      date_of_birth=date(2015, 1, 9), present=False,
                                                      school_urn="900101"))])

    def dead_letters() -> dict[bytes, dict[str, str]]:
        wanted = {bad["bad-signature"].key, bad["malformed"].key}
        return {
            r.headers[DLQ_ORIGIN_KEY]: {"reason": r.header(DLQ_REASON) or "", "stage": r.header(DLQ_STAGE) or "",
                                        "value": r.value.decode("utf-8", "replace")}
            for r in bus.topic(bus.names.deadletter) if r.headers.get(DLQ_ORIGIN_KEY) in wanted
        }

    def both_dead_letters() -> dict[bytes, dict[str, str]] | None:
        found = dead_letters()
        return found if len(found) == 2 else None

    found = wait_for(both_dead_letters, what="two dead letters")
    assert found[bad["bad-signature"].key]["reason"] == "bad-signature"
    assert found[bad["bad-signature"].key]["stage"] == "verify"
    assert found[bad["bad-signature"].key]["value"] == bad["bad-signature"].value.decode()
    assert found[bad["malformed"].key]["reason"] == "malformed"

    decisions = wait_for(lambda: bus.encompass({good_event}), what="the good event after the bad ones")
    output_id = next(iter(decisions.values())).output_id
    assert wait_for(lambda: bus.notification("900101", output_id or ""), what="the good alert")
    assert bus.processes["processor"].poll() is None, "the processor must still be running"


def test_unknown_school_is_deferred_to_the_mash_and_audited(bus: Bus) -> None:
    """No recorded school: nothing reaches any school; the MASH education desk gets it, and the audit says why."""
    incident = make_incident(Child(first_name="Mabel", surname="Yardley", date_of_birth=date(2012, 8, 30),
                               present=True, school_urn=None))
    [event_id] = bus.publisher().publish([incident])
    [decision] = wait_for(lambda: bus.encompass({event_id}), what="the deferred decision").values()
    assert decision.outcome is Outcome.DEFERRED
    assert decision.clause == "4.3 setting-unknown"
    assert decision.agreement_id == "operation-encompass"
    assert decision.recipient == "northdale-childrens-services"
    assert any("Sch 1 para 18" in basis for basis in decision.lawful_basis)
    mash = bus.names.egress("northdale-childrens-services", Family.REFERRAL)
    wait_for(lambda: event_id in {r.header("safebus.cause") for r in bus.topic(mash)}, what="the MASH referral")
    for school in bus.store.load_directory().of_kind(AgencyKind.SCHOOL):
        causes = {r.header("safebus.cause") for r in bus.topic(bus.names.egress(school.id))}
        assert event_id not in causes


def test_no_adult_name_narrative_or_risk_grade_reaches_any_school(bus: Bus) -> None:
    """Across a varied batch, every school topic and inbox is free of adults' names, narratives and risk grades."""
    marker = uuid.uuid4().hex[:8]
    adults = (
        Adult(first_name=f"Adultvictim{marker}", surname=f"Victimsurname{marker}", role=AdultRole.VICTIM,
              relationship=Relationship.PARENT, date_of_birth=date(1988, 2, 3)),
        Adult(first_name=f"Adultsuspect{marker}", surname=f"Suspectsurname{marker}", role=AdultRole.SUSPECT,
              relationship=Relationship.PARENTS_PARTNER, date_of_birth=date(1985, 7, 8)),
    )
    narrative = f"NARRATIVE-{marker} suspect threatened the victim"
    factory = IncidentFactory(random.Random(marker), now=datetime.now(UTC))
    batch = [factory.incident("schools").model_copy(update={"adults": adults, "narrative": narrative,
                                                            "risk_grade": RiskGrade.HIGH})
             for _ in range(15)]
    event_ids = set(bus.publisher().publish(batch))
    expected = sum(len(i.children) for i in batch)
    def all_decisions() -> dict[str, SharingDecision] | None:
        found = bus.encompass(event_ids)
        return found if len(found) == expected else None

    decisions = wait_for(all_decisions, what=f"{expected} decisions")
    shared = {d.output_id for d in decisions.values() if d.output_id}
    assert shared, "the batch must produce shares for the check to mean anything"

    forbidden = [marker, "1988-02-03", "1985-07-08", "risk", "high", "narrative", "suspect", "victim"]
    router = bus.store.load_directory().router().public_keys()
    subject_keys = key_service_for(bus.settings.state_dir)
    seen = set()
    for school in bus.store.load_directory().of_kind(AgencyKind.SCHOOL):
        keys = bus.store.private_keys(school.id)
        for record in bus.topic(bus.names.egress(school.id)):
            assert marker.encode() not in record.value
            plaintext = open_envelope(record.value, recipient=keys, senders={router.agency_id: router},
                                      topic=record.topic, subject_keys=subject_keys.lookup).plaintext.decode().lower()
            for word in forbidden:
                assert word.lower() not in plaintext, f"{word!r} reached {school.id}"
            seen.add(EncompassNotification.model_validate_json(plaintext).notification_id)
    assert shared <= seen

    wait_for(lambda: bus.delivered(shared) == shared, what="every shared alert in the inbox")
    inbox = bus.inbox()
    try:
        rows = " ".join(" ".join(row) for row in inbox.raw_rows())
    finally:
        inbox.close()
    # The inbox holds sealed envelopes (random base64url), where short words occur by chance: look only for
    # what cannot (the random marker, dates of birth). The plaintext of every alert was checked word by word above.
    for text in (marker, "1988-02-03", "1985-07-08"):
        assert text not in rows


def test_school_inbox_refuses_an_alert_the_router_did_not_sign(bus: Bus) -> None:
    """A record on a school's topic that the router did not sign is dead-lettered at delivery, not shown."""
    from safebus.envelope import seal
    from safebus.kafka_io import produce_all, reliable_producer
    from safebus.records import Output

    school = bus.store.load_directory().school_by_urn("900101")
    assert school is not None
    topic = bus.names.egress(school.id)
    forged = seal(b'{"notification_id": "forged"}', sender=bus.store.private_keys("northdale-police"),
                  recipient=school.public_keys(), event_id="forged", event_type="encompass-notification",
                  schema_id="safebus:encompass/notification", schema_version="1.0.0", topic=topic,
                  now=datetime.now(UTC))
    key = f"forged-{uuid.uuid4()}".encode()
    produce_all(reliable_producer(bus.settings.bootstrap), [Output(topic=topic, key=key, value=forged)])

    def dead_letter() -> dict[str, str] | None:
        for record in bus.topic(bus.names.deadletter):
            if record.headers.get(DLQ_ORIGIN_KEY) == key:
                return {"reason": record.header(DLQ_REASON) or "", "stage": record.header(DLQ_STAGE) or ""}
        return None

    assert wait_for(dead_letter, what="the forged alert's dead letter") == {"reason": "unknown-sender",
                                                                             "stage": "deliver"}
    assert "forged" not in bus.delivered({"forged"})

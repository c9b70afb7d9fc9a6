"""Erasure by crypto-shredding: after 'safebus erase', nothing anywhere yields the subject's data."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date

import pytest

from safebus.app.wiring import inbox_opener, key_service_for, tokeniser_for
from safebus.consumers.audit.log import read_facts
from safebus.envelope import open_envelope, peek_header
from safebus.errors import InvalidEnvelope
from safebus.records import Record
from safebus.schemas.decision import Outcome, SubjectErased
from safebus.schemas.police import Child
from safebus.topics import bus_topics
from tests.integration.conftest import Bus, make_incident, wait_for

pytestmark = pytest.mark.kafka


def _all_records(bus: Bus) -> list[Record]:
    """Every record in every topic of this bus: what a broker backup would hold."""
    names = [spec.name for spec in bus_topics(bus.store.load_directory(), bus.names)]
    return [record for name in names for record in bus.topic(name)]


def _readable_texts(bus: Bus, records: list[Record]) -> tuple[list[str], list[str]]:
    """Try every record with its addressee's keys and the key service: (plaintexts opened, refusal reasons)."""
    directory = bus.store.load_directory()
    senders = directory.public_keys()
    lookup = key_service_for(bus.settings.state_dir).lookup
    texts, refusals = [], []
    for record in records:
        header = peek_header(record.value)
        if header is None or directory.get(header.get("recipient", "")) is None:
            texts.append(record.value.decode("utf-8", "replace"))  # audit facts and other plain records
            continue
        try:
            opened = open_envelope(record.value, recipient=bus.store.private_keys(header["recipient"]),
                                   senders=senders, subject_keys=lookup)
        except InvalidEnvelope as exc:
            refusals.append(exc.reason)
            continue
        texts.append(opened.plaintext.decode())
    return texts, refusals


def test_erased_subject_is_unreadable_in_every_topic_backup_and_inbox(bus: Bus) -> None:
    """Destroying one child's keys shreds every copy of their data; their sibling's alert is untouched."""
    marker, sibling_marker = f"Erasable{uuid.uuid4().hex[:8]}", f"Kept{uuid.uuid4().hex[:8]}"
    child = Child(first_name=marker, surname="Quarrie", date_of_birth=date(2015, 2, 3), present=True,
                  school_urn="900101")
    sibling = Child(first_name=sibling_marker, surname="Quarrie", date_of_birth=date(2012, 7, 9), present=False,
                    school_urn="900105")
    [event_id] = bus.publisher().publish([make_incident(child, sibling)])

    def both_shared() -> dict[str, str] | None:
        shared = {d.recipient or "": d.output_id or "" for d in bus.encompass({event_id}).values()
                  if d.outcome is Outcome.SHARED}
        return shared if len(shared) == 2 else None

    outputs = wait_for(both_shared, what="both children's notifications")
    opener = inbox_opener(bus.settings)

    def alert(urn: str, notification_id: str) -> str | None:
        inbox = bus.inbox()
        try:
            found = [a for a in inbox.alerts(urn, opener) if a.notification_id == notification_id]
        finally:
            inbox.close()
        return found[0].describe() if found else None

    assert marker in wait_for(lambda: alert("900101", outputs["school-900101"]), what="the child's alert")
    assert sibling_marker in wait_for(lambda: alert("900105", outputs["school-900105"]), what="the sibling's alert")
    backup = _all_records(bus)
    texts, _ = _readable_texts(bus, backup)
    assert any(marker in text for text in texts), "before erasure the child's data must be readable"

    token = tokeniser_for(bus.settings.state_dir).person(first_name=marker, surname="Quarrie",
                                                         date_of_birth=date(2015, 2, 3))
    erased = subprocess.run(
        [sys.executable, "-m", "safebus", "erase", "--subject", token, "--reason", "Art 17 request upheld (test)",
         "--by", "IG officer T-1", "--bootstrap", bus.settings.bootstrap],
        env={**os.environ, "SAFEBUS_HOME": str(bus.settings.state_dir), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix},
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert f"erased {token}" in erased.stdout

    for records in (backup, _all_records(bus)):
        texts, refusals = _readable_texts(bus, records)
        assert not any(marker in text for text in texts)
        assert "subject-key-unavailable" in refusals
        assert any(sibling_marker in text for text in texts), "the sibling's own notification stays readable"

    assert "erased" in (alert("900101", outputs["school-900101"]) or "")
    assert sibling_marker in (alert("900105", outputs["school-900105"]) or "")
    inbox = bus.inbox()
    try:
        assert not any(marker in cell for row in inbox.raw_rows() for cell in row)
    finally:
        inbox.close()

    [fact] = [f for f in read_facts(bus.settings.bootstrap, bus.names.audit, SubjectErased).values()
              if f.subject == token]
    assert fact.key_ids_destroyed
    assert all(k.startswith(f"{token}@") for k in fact.key_ids_destroyed)
    assert (fact.requested_by, fact.reason) == ("IG officer T-1", "Art 17 request upheld (test)")
    assert marker not in fact.model_dump_json()

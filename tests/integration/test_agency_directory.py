"""The agency directory travels on a compacted topic; every machine keeps only what the root key signed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from safebus.app.agency_admin import publish_entries, sync_from_topic
from safebus.app.wiring import Settings, topics_for
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore, SignedAgency
from safebus.kafka_security import client_config
from safebus.producers.synthetic import create_partnership
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW
from tests.integration.conftest import Broker

pytestmark = pytest.mark.kafka


def _safebus(state: Path, prefix: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safebus", "--prefix", prefix, *argv],
                          env={**os.environ, "SAFEBUS_HOME": str(state)}, capture_output=True, text=True,
                          check=False, timeout=120)


def test_administrator_changes_reach_another_machine_through_the_topic(kafka: Broker, tmp_path: Path) -> None:
    """Add, rotate and revoke on the admin machine; a reader with only the trust anchor rebuilds the same directory."""
    admin_state, reader_state = tmp_path / "admin", tmp_path / "reader"
    prefix = f"g{uuid.uuid4().hex[:8]}"
    admin = PartnershipStore(admin_state)
    create_partnership(admin)
    apply_topics(kafka.bootstrap, topics_for(Settings(state_dir=admin_state, bootstrap=kafka.bootstrap,
                                                       names=TopicNames(prefix=prefix))))
    added = _safebus(admin_state, prefix, "agency", "add", "--agency", "school-900107", "--kind", "school",
                     "--name", "Sedgefold Primary School", "--urn", "900107", "--bootstrap", kafka.bootstrap)
    assert added.returncode == 0, added.stderr
    published = _safebus(admin_state, prefix, "agency", "publish", "--bootstrap", kafka.bootstrap)
    assert published.returncode == 0, published.stderr
    rotated = _safebus(admin_state, prefix, "agency", "rotate-keys", "--agency", "northdale-police",
                       "--bootstrap", kafka.bootstrap)
    assert rotated.returncode == 0, rotated.stderr
    old_key = rotated.stdout.split("keys ")[1].split(" ")[0]
    revoked = _safebus(admin_state, prefix, "agency", "revoke", "--agency", "northdale-police", "--key", old_key,
                       "--bootstrap", kafka.bootstrap)
    assert "(revoked)" in revoked.stdout

    reader = PartnershipStore(reader_state)
    reader.write_trust_anchor(admin.trust_anchor())
    refused = sync_from_topic(reader, bootstrap=kafka.bootstrap, topic=TopicNames(prefix=prefix).agencies,
                              partnership="Northdale", now=FIXED_NOW)
    assert refused == []
    mine, theirs = reader.load_directory(now=FIXED_NOW), admin.load_directory(now=FIXED_NOW)
    assert {a.id: a for a in mine.agencies} == {a.id: a for a in theirs.agencies}
    police = mine.get("northdale-police")
    assert police is not None
    assert [g.status.value for g in police.keys] == ["revoked", "active"]
    assert mine.school_by_urn("900107") is not None

    listed = _safebus(admin_state, prefix, "agency", "list")
    assert "school-900107" in listed.stdout
    assert f"key {old_key} revoked" in listed.stdout


def test_a_forged_entry_on_the_topic_is_refused(kafka: Broker, tmp_path: Path) -> None:
    """Someone who can write to the topic but lacks the root key cannot add or change an agency."""
    admin = PartnershipStore(tmp_path / "admin")
    create_partnership(admin)
    topic = f"f{uuid.uuid4().hex[:8]}.reference.agencies"
    from confluent_kafka.admin import AdminClient, NewTopic

    client = AdminClient(client_config(kafka.bootstrap))
    client.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic].result(30)
    genuine = admin.signed_entries()
    forged_raw = json.loads(genuine[0].model_dump_json())
    forged_raw["entry"]["name"] = "A forged police force"
    publish_entries(kafka.bootstrap, topic, [*genuine[1:], SignedAgency.model_validate(forged_raw)])

    reader = PartnershipStore(tmp_path / "reader")
    reader.write_trust_anchor(admin.trust_anchor())
    refused = sync_from_topic(reader, bootstrap=kafka.bootstrap, topic=topic, partnership="Northdale", now=FIXED_NOW)
    assert refused == [genuine[0].entry.id]
    assert reader.load_directory(now=FIXED_NOW).get(genuine[0].entry.id) is None

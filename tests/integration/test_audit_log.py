"""
The audit log on a real broker: everything that happened is in it once, and it proves itself.

An information-governance officer relies on the log holding every decision,
delivery, refusal, directory change and rule-set change exactly once — even
when the sequencer is killed mid-stream — and on `safebus audit verify`
catching any later edit of an export.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from safebus.app.agency_admin import publish_entries
from safebus.app.wiring import open_ledger
from safebus.consumers.audit.ledger import LogIdentity
from safebus.directory import AgencyKind
from safebus.producers.synthetic import IncidentFactory, corrupted_records
from safebus.records import DLQ_ORIGIN_KEY
from safebus.schemas.police import Child
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def audited_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus with the audit sequencer running (checkpoints every second)."""
    os.environ["SAFEBUS_CHECKPOINT_SECONDS"] = "1"
    try:
        with running_bus(kafka, tmp_path_factory.mktemp("audit"), prefix=f"a{uuid.uuid4().hex[:10]}") as bus:
            bus.start("sequencer")
            yield bus
    finally:
        os.environ.pop("SAFEBUS_CHECKPOINT_SECONDS", None)


def _facts(bus: Bus) -> dict[str, dict[str, object]]:
    ledger = open_ledger(bus.settings)
    try:
        return {leaf.fact_id: json.loads(leaf.body) for leaf in ledger.leaves()}
    finally:
        ledger.close()


def _cli(bus: Bus, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAFEBUS_HOME": str(bus.settings.state_dir), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix,
           "KAFKA_BOOTSTRAP_SERVERS": bus.settings.bootstrap}
    return subprocess.run([sys.executable, "-m", "safebus", "audit", *argv], env=env, capture_output=True,
                          text=True, check=False, timeout=120)


def test_every_kind_of_fact_reaches_the_log_once_even_across_a_sequencer_kill(audited_bus: Bus) -> None:
    """Decisions, deliveries, dead letters, directory entries and the rule set: each appended exactly once."""
    bus = audited_bus
    publisher = bus.publisher()
    directory = bus.store.load_directory()
    publish_entries(bus.settings.bootstrap, bus.names.agencies, bus.store.signed_entries())
    incidents = [make_incident(Child(first_name=f"Ash{n}", surname="Fernley", date_of_birth=date(2015, 2, n + 1),
                                     present=True, school_urn="900101")) for n in range(6)]
    publisher.publish(incidents[:3])
    bad = corrupted_records(publisher, IncidentFactory(random.Random(11), now=datetime.now(UTC)),
                            school=directory.of_kind(AgencyKind.SCHOOL)[0].public_keys())
    publisher.publish_raw([bad["bad-signature"]])
    wait_for(lambda: len(_facts(bus)) > 5 or None, what="the first facts in the log")
    bus.stop("sequencer", signal.SIGKILL)
    publisher.publish(incidents[3:])
    bus.start("sequencer")

    ids = {i.event_id for i in incidents}

    def complete() -> dict[str, dict[str, object]] | None:
        facts = _facts(bus)
        kinds = [f["event_type"] for f in facts.values()]
        decided = {f["about_event_id"] for f in facts.values() if f["event_type"] == "audit.sharing-decision"}
        delivered = [f for f in facts.values() if f["event_type"] == "audit.delivered"]
        dead = [f for f in facts.values() if f["event_type"] == "audit.dead-lettered"
                and f["origin_offset"] is not None]
        ready = (ids <= decided and len(delivered) >= 6 and dead and "audit.ruleset-loaded" in kinds
                 and kinds.count("audit.directory-entry-published") >= len(directory.agencies))
        return facts if ready else None

    facts = wait_for(complete, timeout_s=120, what="decisions, deliveries, dead letter, directory and rule set")
    on_topic = {r.headers.get("safebus.event_id") for r in bus.topic(bus.names.audit)}
    decisions = {fid for fid, f in facts.items() if f["event_type"] == "audit.sharing-decision"}
    assert decisions <= {i.decode() for i in on_topic if i}  # logged decisions are the router's own
    dead = [f for f in facts.values() if f["event_type"] == "audit.dead-lettered"]
    assert any(f["reason"] == "bad-signature" and f["stage"] == "verify" for f in dead)
    assert len(dead) == len({r.headers.get(DLQ_ORIGIN_KEY) or r.key for r in bus.topic(bus.names.deadletter)})
    ledger = open_ledger(bus.settings)
    try:
        assert ledger.size == len(facts)  # fact ids are unique: nothing was appended twice
    finally:
        ledger.close()


def test_the_officer_verifies_the_log_and_an_edited_export_fails_naming_the_leaf(audited_bus: Bus,
                                                                                 tmp_path: Path) -> None:
    """`audit verify` passes live and on an export; editing one leaf of the export names that leaf."""
    bus = audited_bus
    wait_for(lambda: len(_facts(bus)) > 3 or None, what="facts in the log")
    vkey = _cli(bus, "vkey").stdout.strip()
    assert vkey.startswith(bus.settings.audit_origin + "+")
    live = _cli(bus, "verify")
    assert live.returncode == 0, live.stdout + live.stderr
    export = tmp_path / "audit.jsonl"
    assert _cli(bus, "export", str(export), "--viewer", "igo-2", "--role", "information-governance").returncode == 0
    assert _cli(bus, "verify", str(export), "--vkey", vkey).returncode == 0
    lines = export.read_text().splitlines()
    entry = json.loads(lines[3])
    entry["fact"]["recorded_at"] = "2020-01-01T00:00:00Z"
    lines[3] = json.dumps(entry)
    export.write_text("\n".join(lines) + "\n")
    tampered = _cli(bus, "verify", str(export), "--vkey", vkey)
    assert tampered.returncode == 1
    assert f"leaf {entry['index']}: altered" in tampered.stdout


def test_a_decision_is_proved_in_the_log_with_the_key_alone(audited_bus: Bus, tmp_path: Path) -> None:
    """`audit prove --event` gives a bundle that `check-proof` accepts with only the published key."""
    bus = audited_bus
    [event] = bus.publisher().publish([make_incident(Child(first_name="Mabel", surname="Ostrey",
                                                           date_of_birth=date(2016, 6, 6), present=False,
                                                           school_urn="900101"))])

    def decision_id() -> str | None:
        return next((fid for fid, f in _facts(bus).items()
                     if f.get("about_event_id") == event), None)

    fact_id = wait_for(decision_id, what="the decision in the log")
    proof = _cli(bus, "prove", "--event", fact_id, "--viewer", "aud-2", "--role", "auditor")
    assert proof.returncode == 0, proof.stderr
    bundle = tmp_path / "proof.json"
    bundle.write_text(proof.stdout)
    vkey = _cli(bus, "vkey").stdout.strip()
    checked = _cli(bus, "check-proof", str(bundle), "--vkey", vkey)
    assert checked.returncode == 0, checked.stdout
    assert "included" in checked.stdout
    checkpoints = bus.topic(bus.names.checkpoints)
    assert checkpoints, "checkpoints are published for witnesses"
    identity = LogIdentity.from_vkey(vkey)
    assert all(identity.open(r.value).size > 0 for r in checkpoints)


def test_an_officer_exports_a_chronology_by_name_and_the_view_is_itself_audited(audited_bus: Bus) -> None:
    """`audit chronology --first-name … --dob …` finds what was decided about a child; the log records who looked."""
    bus = audited_bus
    [event] = bus.publisher().publish([make_incident(Child(first_name="Oriel", surname="Thackray",
                                                           date_of_birth=date(2015, 3, 3), present=True,
                                                           school_urn="900101"))])
    wait_for(lambda: any(f.get("about_event_id") == event for f in _facts(bus).values()) or None,
             what="the decision in the log")
    exported = _cli(bus, "chronology", "--first-name", "Oriel", "--surname", "Thackray", "--dob", "2015-03-03",
                    "--format", "json", "--viewer", "igo-7", "--role", "information-governance")
    assert exported.returncode == 0, exported.stderr
    chronology = json.loads(exported.stdout)
    assert "Oriel Thackray" in exported.stdout  # the officer typed the name, so the export may show it
    text = json.dumps(chronology)
    assert "operation-encompass" in text
    assert "notify-setting" in text or "4.1" in text
    refused = _cli(bus, "chronology", "--first-name", "Oriel", "--surname", "Thackray", "--dob", "2015-03-03",
                   "--viewer", "aud-1", "--role", "auditor")
    assert refused.returncode == 2
    views = wait_for(lambda: [f for f in _facts(bus).values() if f["event_type"] == "audit.viewed"
                              and f["viewer"] == "igo-7"] or None, what="the view in the audit log")
    assert "Oriel" not in json.dumps(views)  # the log says who looked and at whom (a token), never the name
    assert views[0]["subjects"]
    listed = _cli(bus, "query", "--fact-type", "audit.viewed", "--viewer", "aud-1", "--role", "auditor")
    assert listed.returncode == 0, listed.stderr
    assert "audit.viewed" in listed.stdout
    exports = [f for f in _facts(bus).values() if f["event_type"] == "audit.viewed" and f["view"] == "cli/export"]
    assert [f["viewer"] for f in exports] == ["igo-2"], "exporting the log is itself a view, audited"


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608 - a fixed table name


def test_a_lost_ledger_is_rebuilt_from_the_bus_row_for_row_and_the_log_carries_on(audited_bus: Bus,
                                                                                  tmp_path: Path) -> None:
    """
    The sequencer's disk is lost: ``audit rebuild`` makes the same ledger from the leaves and checkpoint topics
    (every rebuild the same), ``audit verify`` passes on it, and a sequencer started on it extends the log.
    """
    bus = audited_bus
    bus.publisher().publish([make_incident(Child(first_name="Rowan", surname="Ashby", date_of_birth=date(2016, 4, 2),
                                                 present=True, school_urn="900101"))])
    wait_for(lambda: len(_facts(bus)) > 12 or None, what="facts in the log")
    bus.stop("sequencer")  # SIGTERM: the last checkpoint is signed, its leaves published first
    ledger_path = bus.settings.audit_dir / "ledger.sqlite"
    lost = tmp_path / "lost.sqlite"
    for suffix in ("", "-wal", "-shm"):  # the whole database, whatever its write-ahead log still holds
        if Path(f"{ledger_path}{suffix}").exists():
            Path(f"{ledger_path}{suffix}").rename(f"{lost}{suffix}")

    rebuilt = _cli(bus, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith(f"rebuilt {ledger_path}: ")
    leaves, checkpoints = _rows(lost, "leaves"), _rows(lost, "checkpoints")
    assert len(leaves) > 12
    assert checkpoints
    assert _rows(ledger_path, "leaves") == leaves
    assert _rows(ledger_path, "checkpoints") == checkpoints
    again = _cli(bus, "rebuild", "--into", str(tmp_path / "again.sqlite"))
    assert again.returncode == 0, again.stderr
    assert _rows(tmp_path / "again.sqlite", "leaves") == leaves
    refused = _cli(bus, "rebuild")
    assert refused.returncode == 2
    assert f"a ledger of {len(leaves)} leaves is already at {ledger_path}" in refused.stderr
    verified = _cli(bus, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    bus.start("sequencer")
    bus.publisher().publish([make_incident(Child(first_name="Sorrel", surname="Ashby", date_of_birth=date(2014, 9, 9),
                                                 present=True, school_urn="900101"))])
    wait_for(lambda: len(_facts(bus)) > len(leaves) or None, what=f"the log extended\n{bus.log('sequencer')}")
    assert _rows(ledger_path, "leaves")[:len(leaves)] == leaves, "the rebuilt history is kept as it was"
    assert _cli(bus, "verify").returncode == 0


def test_a_backup_taken_while_sequencing_is_restored_and_the_bus_gives_back_what_came_after(audited_bus: Bus,
                                                                                            tmp_path: Path) -> None:
    """
    ``audit backup`` while the sequencer runs; the disk is lost later; ``audit restore`` puts the backup back
    and the sequencer takes in, from the leaves topic, every leaf appended after the backup: the lost ledger,
    row for row, and then it carries on.
    """
    bus = audited_bus
    bus.publisher().publish([make_incident(Child(first_name="Tamsin", surname="Ashby", date_of_birth=date(2015, 1, 7),
                                                 present=True, school_urn="900101"))])
    taken = _cli(bus, "backup", str(tmp_path / "ledger.backup"))
    assert taken.returncode == 0, taken.stderr
    backed_up = _rows(tmp_path / "ledger.backup", "leaves")
    bus.publisher().publish([make_incident(Child(first_name="Ulla", surname="Ashby", date_of_birth=date(2013, 6, 2),
                                                 present=True, school_urn="900101"))])
    ledger_path = bus.settings.audit_dir / "ledger.sqlite"
    wait_for(lambda: len(_rows(ledger_path, "leaves")) > len(backed_up) or None, what="leaves after the backup")
    bus.stop("sequencer")
    lost = _rows(ledger_path, "leaves")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)

    restored = _cli(bus, "restore", str(tmp_path / "ledger.backup"))
    assert restored.returncode == 0, restored.stderr
    assert _rows(ledger_path, "leaves") == backed_up
    bus.start("sequencer")
    wait_for(lambda: len(_rows(ledger_path, "leaves")) >= len(lost) or None,
             what=f"the leaves after the backup taken in from the bus\n{bus.log('sequencer')}")
    assert _rows(ledger_path, "leaves")[:len(lost)] == lost
    verified = _cli(bus, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

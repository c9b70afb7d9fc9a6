"""
The audit log: facts appended once, checkpoints signed, exports verified, tampering located.

An information-governance officer hands an export to an auditor; whatever
happened to it on the way — one leaf changed, removed, added or moved — the
auditor's verifier must say so and name the leaf.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safebus.consumers.audit.facts import fact_from_dead_letter, leaf_bytes
from safebus.consumers.audit.ledger import AuditLedger, LogIdentity, LogKey, NewFact
from safebus.consumers.audit.verify import (
    check_consistency,
    check_inclusion,
    consistency_bundle,
    export_lines,
    inclusion_bundle,
    verify_export,
)
from safebus.merkle import ProofError, mth
from safebus.records import Origin, Record, dead_letter
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import ConsentStatus, Outcome, SharingDecision
from tests.conftest import FIXED_NOW

ORIGIN = "audit.safebus.invalid/test"


def _decision(n: int, outcome: Outcome = Outcome.SHARED) -> NewFact:
    fact = SharingDecision(
        **event_metadata(SharingDecision, producer="safebus-router", occurred_at=FIXED_NOW, recorded_at=FIXED_NOW,
                         event_id=f"00000000-0000-4000-8000-{n:012d}", subjects=(f"subj_{n:032x}",)),
        about_event_id=f"incident-{n}", about_event_type="police.da-incident", about_producer="northdale-police",
        outcome=outcome, purpose="operation-encompass", recipient="brookfield-primary", recipient_kind="school",
        reason="child linked to a police-attended domestic-abuse incident", agreement_id="operation-encompass",
        agreement_version="2.1.0", clause="OE-1", lawful_basis=("UK GDPR Art 6(1)(e)",),
        consent_status=ConsentStatus.NOT_REQUIRED, fields_released=("child_first_name",), output_id=f"n-{n}",
    )
    return NewFact(fact_id=fact.event_id, fact_type=fact.event_type, body=leaf_bytes(fact))


def _ledger(tmp_path: Path, leaves: int, *, every: int = 4) -> AuditLedger:
    ledger = AuditLedger(tmp_path / "ledger.sqlite", LogKey.load_or_create(tmp_path / "key.pem", origin=ORIGIN),
                         checkpoint_every=every)
    for start in range(0, leaves, 3):
        ledger.append([_decision(n) for n in range(start, min(start + 3, leaves))], now=FIXED_NOW)
        if ledger.checkpoint_due(FIXED_NOW):
            ledger.make_checkpoint(now=FIXED_NOW)
    return ledger


def test_a_fact_seen_again_is_not_appended_twice(tmp_path: Path) -> None:
    """Redelivered facts (same id) keep their first place; the tree grows only by new facts."""
    ledger = _ledger(tmp_path, 5)
    assert ledger.append([_decision(2), _decision(5), _decision(5), _decision(0)], now=FIXED_NOW) == [5]
    assert ledger.size == 6
    assert ledger.index_of(_decision(2).fact_id) == 2


def test_the_tree_survives_a_restart(tmp_path: Path) -> None:
    """The ledger rebuilt from disk has the same root, and keeps numbering where it stopped."""
    ledger = _ledger(tmp_path, 9)
    root = ledger.root()
    ledger.close()
    reopened = AuditLedger(tmp_path / "ledger.sqlite", LogKey.load_or_create(tmp_path / "key.pem", origin=ORIGIN))
    assert reopened.root() == root == mth([leaf.leaf_hash for leaf in reopened.leaves()])
    assert reopened.append([_decision(9)], now=FIXED_NOW) == [9]


def test_checkpoints_come_every_n_leaves_or_after_the_interval(tmp_path: Path) -> None:
    """A quiet log still gets a checkpoint once the interval passes; a busy one every N leaves."""
    ledger = AuditLedger(tmp_path / "l.sqlite", LogKey.load_or_create(tmp_path / "k.pem", origin=ORIGIN),
                         checkpoint_every=10, checkpoint_interval=timedelta(seconds=30))
    ledger.append([_decision(0)], now=FIXED_NOW)
    assert ledger.checkpoint_due(FIXED_NOW)  # the first leaf is never left uncovered
    ledger.make_checkpoint(now=FIXED_NOW)
    ledger.append([_decision(1)], now=FIXED_NOW)
    assert not ledger.checkpoint_due(FIXED_NOW + timedelta(seconds=29))
    assert ledger.checkpoint_due(FIXED_NOW + timedelta(seconds=30))
    ledger.append([_decision(n) for n in range(2, 11)], now=FIXED_NOW)
    assert ledger.checkpoint_due(FIXED_NOW)
    assert ledger.make_checkpoint(now=FIXED_NOW) is not None
    assert ledger.make_checkpoint(now=FIXED_NOW) is None  # nothing new: no new checkpoint


def test_an_untouched_export_verifies(tmp_path: Path) -> None:
    """Every receipt, checkpoint signature, root and consistency holds on an honest export."""
    ledger = _ledger(tmp_path, 23)
    report = verify_export(list(export_lines(ledger, now=FIXED_NOW)), pinned=ledger.identity)
    assert report.ok, report.problems
    assert (report.leaves, report.covered) == (23, 23)
    assert report.checkpoints >= 5
    assert report.root == ledger.root()


def test_an_export_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    """The auditor pins the partnership's published key; a look-alike log with its own key does not pass."""
    ledger = _ledger(tmp_path, 4)
    impostor = LogKey.load_or_create(tmp_path / "other.pem", origin=ORIGIN).identity
    report = verify_export(list(export_lines(ledger, now=FIXED_NOW)), pinned=impostor)
    assert not report.ok
    assert any("different log key" in str(p) for p in report.problems)


def _tamper(lines: list[str], kind: str, position: int, rng: random.Random) -> tuple[list[str], int]:
    """Apply one tampering to the leaf at `position` (line position + 1); return lines and the leaf to name."""
    header, leaves = lines[0], [line for line in lines[1:] if '"index"' in line]
    checkpoints = [line for line in lines[1:] if '"checkpoint"' in line]
    if kind == "modify":
        entry = json.loads(leaves[position])
        entry["fact"]["reason"] = entry["fact"]["reason"] + " (amended)"
        leaves[position] = json.dumps(entry)
        expected = position
    elif kind == "modify-and-renumber-nothing":
        entry = json.loads(leaves[position])
        entry["fact"]["outcome"] = "withheld" if entry["fact"]["outcome"] == "shared" else "shared"
        leaves[position] = json.dumps(entry)
        expected = position
    elif kind == "delete":
        del leaves[position]
        expected = position
    elif kind == "delete-and-renumber":
        del leaves[position]
        for later in range(position, len(leaves)):
            entry = json.loads(leaves[later])
            entry["index"] = later
            leaves[later] = json.dumps(entry)
        expected = position
    elif kind == "insert":
        forged = json.loads(leaves[rng.randrange(len(leaves))])
        forged["index"] = position
        forged["fact"]["event_id"] = "11111111-1111-4111-8111-111111111111"
        leaves.insert(position, json.dumps(forged))
        expected = position
    elif kind == "swap":
        other = position + 1 if position + 1 < len(leaves) else position - 1
        leaves[position], leaves[other] = leaves[other], leaves[position]
        expected = min(position, other)
    else:
        raise AssertionError(kind)
    return [header, *leaves, *checkpoints], expected


KINDS = ["modify", "modify-and-renumber-nothing", "delete", "delete-and-renumber", "insert", "swap"]


@pytest.fixture(scope="module")
def honest_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], LogIdentity]:
    """One honest 40-leaf export shared by the tampering properties."""
    ledger = _ledger(tmp_path_factory.mktemp("log"), 40, every=7)
    return list(export_lines(ledger, now=FIXED_NOW)), ledger.identity


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), position=st.integers(0, 39), seed=st.integers(0, 2**16))
def test_any_single_leaf_tampering_is_detected_and_located(
    honest_export: tuple[list[str], LogIdentity], kind: str, position: int, seed: int,
) -> None:
    """Change, delete, insert or reorder one leaf anywhere: the verifier fails and names that leaf first."""
    lines, identity = honest_export
    tampered, expected = _tamper(list(lines), kind, position, random.Random(seed))
    report = verify_export(tampered, pinned=identity)
    assert not report.ok
    assert report.first_bad_leaf == expected, [str(p) for p in report.problems]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_tampering_is_named_in_words(honest_export: tuple[list[str], LogIdentity], kind: str) -> None:
    """The message says what is wrong with the leaf, so an auditor can act on it."""
    lines, identity = honest_export
    tampered, expected = _tamper(list(lines), kind, 17, random.Random(1))
    report = verify_export(tampered, pinned=identity)
    first = next(p for p in report.problems if p.index == expected)
    assert str(first).startswith(f"leaf {expected}: ")
    assert any(word in first.what for word in ("altered", "missing", "out of place", "inserted"))


def test_dropping_the_newest_leaves_is_detected(tmp_path: Path) -> None:
    """Truncating the export's tail still fails: the final checkpoint covers every leaf."""
    ledger = _ledger(tmp_path, 12)
    lines = list(export_lines(ledger, now=FIXED_NOW))
    leaves = [line for line in lines if '"index"' in line]
    truncated = [lines[0], *leaves[:-2], *[line for line in lines if '"checkpoint"' in line]]
    report = verify_export(truncated, pinned=ledger.identity)
    assert report.first_bad_leaf == 10


def test_a_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    """A checkpoint line whose root was changed no longer verifies against the log key."""
    ledger = _ledger(tmp_path, 6)
    lines = list(export_lines(ledger, now=FIXED_NOW))
    note = json.loads(lines[-1])["checkpoint"]
    origin, size, root, *rest = note.split("\n")
    forged = "\n".join([origin, size, root[:-4] + ("AAAA" if not root.endswith("AAAA=") else "BBBB="), *rest])
    report = verify_export([*lines[:-1], json.dumps({"checkpoint": forged})], pinned=ledger.identity)
    assert any("checkpoint does not verify" in str(p) for p in report.problems)


def test_an_inclusion_proof_is_checked_with_the_key_alone(tmp_path: Path) -> None:
    """`audit prove --event` gives a bundle a third party verifies without the log; a changed fact fails."""
    ledger = _ledger(tmp_path, 37)
    bundle = inclusion_bundle(ledger, _decision(11).fact_id, now=FIXED_NOW)
    bundle = json.loads(json.dumps(bundle))  # it travels as JSON
    assert check_inclusion(bundle, ledger.identity) == 11
    assert len(bundle["proof"]) == 6  # ceil(log2(37)) hashes at most
    bundle["fact"]["outcome"] = "withheld"
    with pytest.raises(ProofError):
        check_inclusion(bundle, ledger.identity)


def test_a_proof_under_a_wrong_index_fails(tmp_path: Path) -> None:
    """A proof for one leaf cannot be passed off as another position's (verifiers bind the index)."""
    ledger = _ledger(tmp_path, 16)
    bundle = inclusion_bundle(ledger, _decision(5).fact_id, now=FIXED_NOW)
    bundle["index"] = 4
    with pytest.raises(ProofError):
        check_inclusion(bundle, ledger.identity)


def test_checkpoints_are_consistent_and_a_rewritten_history_is_not(tmp_path: Path) -> None:
    """The consistency proof between two checkpoints verifies; against another log's later checkpoint it fails."""
    ledger = _ledger(tmp_path, 20, every=5)
    sizes = [c.size for c in ledger.checkpoints()]
    bundle = consistency_bundle(ledger, sizes[0], sizes[-1])
    assert check_consistency(bundle, ledger.identity) == (sizes[0], sizes[-1])
    rewritten = AuditLedger(tmp_path / "r.sqlite", LogKey.load_or_create(tmp_path / "key.pem", origin=ORIGIN))
    rewritten.append([_decision(n, Outcome.WITHHELD if n == 1 else Outcome.SHARED) for n in range(20)],
                     now=FIXED_NOW)
    rewritten.make_checkpoint(now=FIXED_NOW)
    forged = dict(bundle, new_checkpoint=rewritten.latest_checkpoint().note.decode())  # type: ignore[union-attr]
    with pytest.raises(ProofError):
        check_consistency(forged, ledger.identity)


def test_a_dead_letter_becomes_a_fact_without_its_content(tmp_path: Path) -> None:
    """Refused input is evidenced by digest, reason and origin; its bytes never enter the log."""
    raw = b'{"child_first_name": "Tamsin", "junk": true}'
    output = dead_letter(raw=raw, origin=Origin(topic="safebus.ingress.northdale-police.da-incident", partition=2,
                                                offset=77), stage="verify", reason="malformed-envelope",
                         detail="not JSON envelope", topic="safebus.deadletter")
    record = Record(topic=output.topic, partition=0, offset=5, key=output.key, value=output.value,
                    headers=dict(output.headers))
    fact = fact_from_dead_letter(record, observed_at=FIXED_NOW)
    again = fact_from_dead_letter(record, observed_at=FIXED_NOW + timedelta(hours=1))
    assert fact.event_id == again.event_id  # the same dead letter read twice is one fact
    assert (fact.reason, fact.stage, fact.origin_offset) == ("malformed-envelope", "verify", 77)
    assert b"Tamsin" not in leaf_bytes(fact)


def test_a_reader_sees_new_leaves_and_cannot_write(tmp_path: Path) -> None:
    """The dashboard opens the ledger with the public key only: it follows the sequencer and cannot append."""
    writer = _ledger(tmp_path, 3)
    reader = AuditLedger(tmp_path / "ledger.sqlite", None, identity=writer.identity)
    writer.append([_decision(3), _decision(4)], now=FIXED_NOW)
    assert reader.size == 5
    assert reader.root() == writer.root()
    with pytest.raises(PermissionError):
        reader.append([_decision(5)], now=FIXED_NOW)

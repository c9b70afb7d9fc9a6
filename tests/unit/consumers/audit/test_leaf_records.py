"""
The leaves topic and a rebuild from it: a new host's ledger is the old one, row for row, or a named refusal.

An operator who lost the sequencer's disk runs ``safebus audit rebuild``; the records it reads have been on a
broker, so each must prove its place (index), content (hash) and origin (the log's receipt) before it is kept.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from safebus.consumers.audit.leaf_records import (
    NotALeaf,
    checkpoint_record,
    leaf_from_record,
    leaf_record,
    signed_at,
)
from safebus.consumers.audit.ledger import AuditLedger, Leaf, LedgerImportError, LogKey
from safebus.consumers.audit.rebuild import rebuild
from safebus.records import Output, Record
from tests.conftest import FIXED_NOW
from tests.unit.consumers.audit.test_ledger import ORIGIN, _ledger

TOPIC = "t.audit.leaves"


def _as_read(output: Output, offset: int = 0) -> Record:
    return Record(topic=output.topic, partition=0, offset=offset, key=output.key, value=output.value,
                  headers=dict(output.headers))


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608 - a fixed table name


def _fresh(tmp_path: Path, original: AuditLedger) -> AuditLedger:
    return AuditLedger(tmp_path / "rebuilt.sqlite", None, identity=original.identity)


def test_a_ledger_rebuilt_from_its_leaf_and_checkpoint_records_is_the_same_row_for_row(tmp_path: Path) -> None:
    original = _ledger(tmp_path, 10)
    leaves = [leaf_from_record(_as_read(leaf_record(leaf, topic=TOPIC), n)) for n, leaf in enumerate(original.leaves())]
    rebuilt = _fresh(tmp_path, original)
    assert rebuilt.import_leaves(leaves) == 10
    for checkpoint in original.checkpoints():
        record = _as_read(checkpoint_record(checkpoint, topic="t.audit.checkpoints"))
        stamped = signed_at(record)
        assert stamped == checkpoint.created_at
        rebuilt.import_checkpoint(record.value, created_at=stamped)
    assert rebuilt.root() == original.root()
    assert _rows(tmp_path / "rebuilt.sqlite", "leaves") == _rows(tmp_path / "ledger.sqlite", "leaves")
    assert _rows(tmp_path / "rebuilt.sqlite", "checkpoints") == _rows(tmp_path / "ledger.sqlite", "checkpoints")


def _leaves(tmp_path: Path) -> tuple[AuditLedger, list[Leaf]]:
    original = _ledger(tmp_path, 5)
    return original, list(original.leaves())


@pytest.mark.parametrize(("change", "expected"), [
    (lambda ls: ls[:2] + ls[3:], "leaf 3 where leaf 2 comes next"),
    (lambda ls: [*ls[:2], replace(ls[2], body=ls[2].body + b" "), *ls[3:]], "leaf 2: its hash is not its body's"),
    (lambda ls: [*ls[:2], replace(ls[2], receipt=ls[3].receipt), *ls[3:]], "leaf 2: its receipt is not this log's"),
])
def test_a_leaf_out_of_place_changed_or_not_signed_for_its_place_is_refused_by_index(
        tmp_path: Path, change: object, expected: str) -> None:
    original, leaves = _leaves(tmp_path)
    rebuilt = _fresh(tmp_path, original)
    changed = change(leaves)  # type: ignore[operator]
    with pytest.raises(LedgerImportError, match=expected):
        rebuilt.import_leaves(changed)
    assert rebuilt.size == 0, "nothing of a refused batch is kept"


def test_a_leaf_from_another_log_is_refused(tmp_path: Path) -> None:
    _original, leaves = _leaves(tmp_path)
    other = AuditLedger(tmp_path / "other.sqlite", LogKey.load_or_create(tmp_path / "other.pem", origin=ORIGIN))
    with pytest.raises(LedgerImportError, match="receipt"):
        other.import_leaves(leaves)


def test_a_checkpoint_the_leaves_do_not_match_is_refused(tmp_path: Path) -> None:
    original, leaves = _leaves(tmp_path)
    rebuilt = _fresh(tmp_path, original)
    rebuilt.import_leaves(leaves[:3])
    checkpoint = original.make_checkpoint(now=FIXED_NOW)
    assert checkpoint is not None
    with pytest.raises(LedgerImportError, match="only 3 are held"):
        rebuilt.import_checkpoint(checkpoint.note, created_at=FIXED_NOW)
    with pytest.raises(LedgerImportError, match="did not sign"):
        rebuilt.import_checkpoint(b"not a note\n", created_at=FIXED_NOW)


@pytest.mark.parametrize("value", [b"", b"[]", b'{"index": -1}', b'{"index": true}', b'{"index": 0, "body": "*"}'])
def test_a_record_that_is_no_leaf_is_named_with_its_offset(value: bytes) -> None:
    with pytest.raises(NotALeaf, match="offset 7"):
        leaf_from_record(Record(topic=TOPIC, partition=0, offset=7, key=b"0", value=value, headers={}))


def test_a_leaf_under_another_key_is_refused(tmp_path: Path) -> None:
    _original, leaves = _leaves(tmp_path)
    output = leaf_record(leaves[1], topic=TOPIC)
    with pytest.raises(NotALeaf, match="not the leaf's index 1"):
        leaf_from_record(Record(topic=TOPIC, partition=0, offset=7, key=b"2", value=output.value, headers={}))


def test_a_rebuild_takes_a_repeated_leaf_once_and_refuses_a_repeat_that_differs(tmp_path: Path) -> None:
    """A publish retried after a lost acknowledgement repeats leaves; a repeat that differs is tampering."""
    original, leaves = _leaves(tmp_path)
    records = [_as_read(leaf_record(leaf, topic=TOPIC), n) for n, leaf in enumerate([*leaves[:4], *leaves[1:]])]
    checkpoints = [_as_read(checkpoint_record(c, topic="t.audit.checkpoints")) for c in original.checkpoints()]
    report = rebuild(_fresh(tmp_path, original), records, checkpoints, now=lambda: FIXED_NOW, batch=2)
    assert (report.leaves, report.repeated, report.checkpoints, report.root) == (
        5, 3, len(checkpoints), original.root())

    forged = replace(leaves[2], fact_type="forged")
    records = [_as_read(leaf_record(leaf, topic=TOPIC), n) for n, leaf in enumerate([*leaves, forged])]
    with pytest.raises(LedgerImportError, match="leaf 2 appears twice with different content"):
        rebuild(AuditLedger(tmp_path / "again.sqlite", None, identity=original.identity), records, [],
                now=lambda: FIXED_NOW, batch=2)

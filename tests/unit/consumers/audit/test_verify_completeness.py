"""
An export must prove it is the whole log, and that the log never shrank or forked since an auditor last looked.

Issue 11: an export cut to 100 of 15,214 leaves with every checkpoint removed
"verified" with exit 0, and the verifier's consistency loop compared the
recomputed tree with itself.  Now an export needs a signed checkpoint over
every leaf; a checkpoint the auditor saw before (given with ``--checkpoint``
or pinned by an earlier ``audit verify``) must be covered; and the export's
newest checkpoint must extend it by an RFC 9162 consistency proof checked
against the earlier checkpoint's own signed root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safebus.consumers.audit.ledger import AuditLedger, LogKey, NewFact
from safebus.consumers.audit.verify import export_lines, verify_export
from safebus.schemas.decision import Outcome
from tests.conftest import FIXED_NOW
from tests.unit.consumers.audit.test_ledger import ORIGIN, _decision


def _log(folder: Path, key: Path, facts: list[NewFact], *, every: int = 4) -> AuditLedger:
    """A ledger of `facts` signed with the log key in `key`, checkpointed every `every` leaves."""
    ledger = AuditLedger(folder / "ledger.sqlite", LogKey.load_or_create(key, origin=ORIGIN), checkpoint_every=every)
    for start in range(0, len(facts), 3):
        ledger.append(facts[start:start + 3], now=FIXED_NOW)
        if ledger.checkpoint_due(FIXED_NOW):
            ledger.make_checkpoint(now=FIXED_NOW)
    return ledger


def _export(ledger: AuditLedger) -> list[str]:
    return list(export_lines(ledger, now=FIXED_NOW))


def _leaves(lines: list[str]) -> list[str]:
    return [line for line in lines if '"index"' in line]


def _checkpoints(lines: list[str]) -> list[str]:
    return [line for line in lines if '"checkpoint"' in line]


def _note(line: str) -> str:
    return str(json.loads(line)["checkpoint"])


def test_an_export_with_every_checkpoint_removed_fails(tmp_path: Path) -> None:
    """The bug as filed: leaves with no checkpoint prove nothing about what was cut off."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(30)])
    lines = _export(ledger)
    cut = [lines[0], *_leaves(lines)[:10]]
    report = verify_export(cut, pinned=ledger.identity)
    assert not report.ok
    assert any("no signed checkpoint" in str(p) for p in report.problems)
    assert not verify_export([lines[0], *_leaves(lines)], pinned=ledger.identity).ok  # all leaves, still no checkpoint


def test_leaves_after_the_last_checkpoint_fail(tmp_path: Path) -> None:
    """Cutting an export at an old checkpoint and keeping later leaves leaves them unproved: that fails too."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(30)])
    lines = _export(ledger)
    first = _checkpoints(lines)[0]
    report = verify_export([lines[0], *_leaves(lines)[:10], first], pinned=ledger.identity)
    assert any("not covered" in str(p) for p in report.problems), report.problems


def test_an_export_shorter_than_a_checkpoint_seen_before_fails(tmp_path: Path) -> None:
    """An honest-looking prefix (its own checkpoint included) fails once the auditor holds a later checkpoint."""
    key = tmp_path / "key.pem"
    ledger = _log(tmp_path, key, [_decision(n) for n in range(12)])
    earlier = _export(ledger)  # 12 leaves, ends with the checkpoint of 12
    ledger.append([_decision(n) for n in range(12, 30)], now=FIXED_NOW)
    later = _export(ledger)
    assert verify_export(earlier, pinned=ledger.identity).ok  # on its own it is a valid, smaller log
    seen = _note(_checkpoints(later)[-1])
    report = verify_export(earlier, pinned=ledger.identity, seen=[seen])
    assert not report.ok
    assert any("truncated" in str(p) and "covers 30" in str(p) for p in report.problems), report.problems
    assert report.first_bad_leaf == 12


def test_the_log_extending_a_checkpoint_seen_before_passes_with_a_proof(tmp_path: Path) -> None:
    """An honest log that grew since the auditor's checkpoint verifies, and says it proved consistency."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(13)])
    seen = _note(_checkpoints(_export(ledger))[-1])
    ledger.append([_decision(n) for n in range(13, 41)], now=FIXED_NOW)
    report = verify_export(_export(ledger), pinned=ledger.identity, seen=[seen])
    assert report.ok, report.problems
    assert report.extended == 1


def test_a_forked_log_fails_the_consistency_proof(tmp_path: Path) -> None:
    """
    Same log key, same first 9 leaves, then different history: self-consistent, but not the log the auditor saw.

    Only the consistency proof against the earlier checkpoint can tell; every
    receipt and checkpoint of the fork is genuinely signed by the log key.
    """
    key = tmp_path / "key.pem"
    honest = _log(tmp_path / "a", key, [_decision(n) for n in range(15)])
    seen = _note(_checkpoints(_export(honest))[-1])  # the checkpoint of 15 an auditor kept
    (tmp_path / "b").mkdir()
    rewritten = [_decision(n) for n in range(9)] + [_decision(n, outcome=Outcome.WITHHELD) for n in range(9, 22)]
    fork = _log(tmp_path / "b", key, rewritten)
    lines = _export(fork)
    assert verify_export(lines, pinned=fork.identity).ok  # without the earlier checkpoint nothing is wrong
    report = verify_export(lines, pinned=fork.identity, seen=[seen])
    assert not report.ok
    assert any("forked" in str(p) for p in report.problems), report.problems
    assert report.extended == 0


def test_a_fork_at_the_same_size_fails(tmp_path: Path) -> None:
    """Two different logs of 15 leaves under one key: the checkpoint seen before does not match."""
    key = tmp_path / "key.pem"
    honest = _log(tmp_path / "a", key, [_decision(n) for n in range(15)])
    seen = _note(_checkpoints(_export(honest))[-1])
    (tmp_path / "b").mkdir()
    fork = _log(tmp_path / "b", key, [_decision(n) for n in range(14)] + [_decision(14, outcome=Outcome.WITHHELD)])
    report = verify_export(_export(fork), pinned=fork.identity, seen=[seen])
    assert any("forked" in str(p) for p in report.problems), report.problems


# --------------------------------------------------------------------------- the command line


def _verify(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAFEBUS_HOME": str(home), "SAFEBUS_TOPIC_PREFIX": "pins"}
    return subprocess.run([sys.executable, "-m", "safebus", "audit", "verify", *argv], env=env, capture_output=True,
                          text=True, check=False, timeout=120)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_audit_verify_pins_the_checkpoint_and_refuses_a_shorter_export_later(tmp_path: Path) -> None:
    """`audit verify` keeps the newest checkpoint it verified; an older, shorter export then exits non-zero."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(12)])
    earlier = _write(tmp_path / "earlier.jsonl", _export(ledger))
    ledger.append([_decision(n) for n in range(12, 30)], now=FIXED_NOW)
    later = _write(tmp_path / "later.jsonl", _export(ledger))
    home, vkey = tmp_path / "home", ledger.identity.vkey
    first = _verify(home, str(later), "--vkey", vkey)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "pinned the checkpoint of 30 leaves" in first.stdout
    shorter = _verify(home, str(earlier), "--vkey", vkey)
    assert shorter.returncode == 1, shorter.stdout
    assert "truncated" in shorter.stdout
    assert _verify(home, str(earlier), "--vkey", vkey, "--no-pin").returncode == 0  # the pin is what caught it
    again = _verify(home, str(later), "--vkey", vkey)
    assert again.returncode == 0, again.stdout
    assert "consistency proved" in again.stdout


def test_audit_verify_checks_a_given_checkpoint_file(tmp_path: Path) -> None:
    """`--checkpoint FILE` (a note as published on the checkpoint topic) must be covered by the export."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(12)])
    earlier = _write(tmp_path / "earlier.jsonl", _export(ledger))
    ledger.append([_decision(n) for n in range(12, 30)], now=FIXED_NOW)
    note = tmp_path / "seen.checkpoint"
    note.write_text(_note(_checkpoints(_export(ledger))[-1]), encoding="utf-8")
    result = _verify(tmp_path / "home", str(earlier), "--vkey", ledger.identity.vkey, "--checkpoint", str(note))
    assert result.returncode == 1, result.stdout
    assert "truncated" in result.stdout


def test_audit_verify_exits_non_zero_on_an_export_without_checkpoints(tmp_path: Path) -> None:
    """The filed case end to end: 10 of 30 leaves, checkpoints stripped, through the command line."""
    ledger = _log(tmp_path, tmp_path / "key.pem", [_decision(n) for n in range(30)])
    lines = _export(ledger)
    cut = _write(tmp_path / "cut.jsonl", [lines[0], *_leaves(lines)[:10]])
    result = _verify(tmp_path / "home", str(cut), "--vkey", ledger.identity.vkey)
    assert result.returncode == 1, result.stdout
    assert "no signed checkpoint" in result.stdout


def test_audit_verify_exits_non_zero_on_a_fork_of_a_checkpoint_given(tmp_path: Path) -> None:
    """A rewritten log under the same key passes alone, and exits 1 against the checkpoint the auditor kept."""
    key = tmp_path / "key.pem"
    honest = _log(tmp_path / "a", key, [_decision(n) for n in range(15)])
    note = tmp_path / "seen.checkpoint"
    note.write_text(_note(_checkpoints(_export(honest))[-1]), encoding="utf-8")
    (tmp_path / "b").mkdir()
    fork = _log(tmp_path / "b", key, [_decision(n) for n in range(9)] +
                [_decision(n, outcome=Outcome.WITHHELD) for n in range(9, 22)])
    export = _write(tmp_path / "fork.jsonl", _export(fork))
    vkey = fork.identity.vkey
    assert _verify(tmp_path / "home", str(export), "--vkey", vkey, "--no-pin").returncode == 0
    result = _verify(tmp_path / "home", str(export), "--vkey", vkey, "--checkpoint", str(note))
    assert result.returncode == 1, result.stdout
    assert "forked" in result.stdout

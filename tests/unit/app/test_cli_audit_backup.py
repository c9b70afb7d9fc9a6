"""
``audit backup`` / ``restore`` as the information-governance officer meets them: a copy that proves itself,
put back row for row, and a tampered or misplaced one refused with where it stops holding.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from safebus.app.cli_audit_backup import backup_ledger, restore_ledger
from safebus.app.cli_audit_rebuild import EXIT_REFUSED
from safebus.app.wiring import Settings, open_ledger
from safebus.errors import ConfigError
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW
from tests.unit.consumers.audit.test_ledger import _decision


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A machine with a ledger of 10 leaves and checkpoints at 4 and 8 (and one at 10)."""
    settings = Settings(state_dir=tmp_path / "state", bootstrap="127.0.0.1:1", names=TopicNames(prefix="b"))
    ledger = open_ledger(settings)
    ledger.checkpoint_every = 4
    try:
        for start in range(0, 10, 2):
            ledger.append([_decision(start), _decision(start + 1)], now=FIXED_NOW)
            if ledger.checkpoint_due(FIXED_NOW):
                ledger.make_checkpoint(now=FIXED_NOW)
        ledger.make_checkpoint(now=FIXED_NOW)
    finally:
        ledger.close()
    return settings


_SELECT = {"leaves": "SELECT * FROM leaves ORDER BY idx", "checkpoints": "SELECT * FROM checkpoints ORDER BY size"}


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(_SELECT[table]).fetchall()
    finally:
        db.close()


def test_a_backup_is_restored_row_for_row_onto_a_lost_disk(settings: Settings, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert backup_ledger(settings, tmp_path / "ledger.backup", out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().startswith(f"backed up 10 leaves to {tmp_path / 'ledger.backup'}")
    live = settings.audit_dir / "ledger.sqlite"
    leaves, checkpoints = _rows(live, "leaves"), _rows(live, "checkpoints")
    live.rename(tmp_path / "lost.sqlite")

    assert restore_ledger(settings, tmp_path / "ledger.backup", vkey=None, into=None, out=out, err=err) == 0
    assert _rows(live, "leaves") == leaves
    assert _rows(live, "checkpoints") == checkpoints
    with pytest.raises(ConfigError, match="a ledger of 10 leaves is already at"):
        restore_ledger(settings, tmp_path / "ledger.backup", vkey=None, into=None, out=out, err=err)
    with pytest.raises(ConfigError, match="never overwrites"):
        backup_ledger(settings, tmp_path / "ledger.backup", out=out, err=err)


def test_a_tampered_backup_is_refused_naming_the_leaf_and_the_ledger_is_left_alone(settings: Settings,
                                                                                  tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert backup_ledger(settings, tmp_path / "ledger.backup", out=out, err=err) == 0
    db = sqlite3.connect(tmp_path / "ledger.backup")
    db.execute("UPDATE leaves SET body = CAST(replace(CAST(body AS TEXT), 'brookfield-primary', 'another-school') "
               "AS BLOB) WHERE idx = 6")
    db.commit()
    db.close()
    target = tmp_path / "restored.sqlite"
    assert restore_ledger(settings, tmp_path / "ledger.backup", vkey=None, into=target, out=out,
                          err=err) == EXIT_REFUSED
    assert "audit restore refused: leaf 6: its hash is not its body's" in err.getvalue()
    assert not target.exists(), "nothing is put in place unless all of it holds"

    db = sqlite3.connect(tmp_path / "ledger.backup")
    db.execute("UPDATE leaves SET body = 'typed over' WHERE idx = 2")
    db.commit()
    db.close()
    assert restore_ledger(settings, tmp_path / "ledger.backup", vkey=None, into=target, out=out,
                          err=err) == EXIT_REFUSED
    assert "audit restore refused: leaf 2: not stored as a ledger stores it" in err.getvalue()

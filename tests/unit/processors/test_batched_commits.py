"""The router's stores commit once per batch: nothing half-done is visible, and a failed batch leaves no trace."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from safebus.processors.replay import ReplayGuard, Sighting
from safebus.processors.state import SqliteRouterState
from safebus.records import Origin
from tests.conftest import FIXED_NOW

CHILD = "subj_" + "c" * 32


def test_a_batch_is_visible_to_the_router_at_once_and_to_others_after_the_commit(tmp_path: Path) -> None:
    """Inside a batch the router reads its own writes; another reader sees them only once the batch commits."""
    state = SqliteRouterState(tmp_path / "state.sqlite")
    other = SqliteRouterState(tmp_path / "state.sqlite")
    with state.batch():
        state.set_enrolment(CHILD, "900103", FIXED_NOW)
        assert state.enrolment(CHILD) == "900103"
        assert other.enrolment(CHILD) is None
    assert other.enrolment(CHILD) == "900103"


def test_a_failed_batch_leaves_no_trace(tmp_path: Path) -> None:
    """Outputs that were not confirmed roll the batch's writes back: the redelivered events start clean."""
    guard = ReplayGuard(tmp_path / "seen.sqlite")
    origin = Origin(topic="t", partition=0, offset=7)
    def failing_batch() -> None:
        with guard.batch():
            assert guard.sight("event-1", origin)[0] is Sighting.NEW
            raise TimeoutError("an output was not confirmed")

    with pytest.raises(TimeoutError):
        failing_batch()
    assert guard.sight("event-1", Origin(topic="t", partition=0, offset=9))[0] is Sighting.NEW


def test_outside_a_batch_each_write_commits_at_once(tmp_path: Path) -> None:
    """Tools and tests that write one at a time still see every write committed."""
    state = SqliteRouterState(tmp_path / "state.sqlite")
    state.set_consent(CHILD, "idva-support", "given", FIXED_NOW - timedelta(days=1))
    assert SqliteRouterState(tmp_path / "state.sqlite").consent(CHILD, "idva-support") == "given"

"""
The router's partitioned tables answer as the SQLite store does, for any arrival order, tie and redelivery.

A deciding worker keeps each subject's state in a Faust table and makes each
change durable in the table's changelog; a worker that takes the partition
over rebuilds the table from that changelog (the last value per key, as
compaction keeps it).  Both must give the answers of the documented total
order, and a redelivery must write nothing new.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safebus.processors.state_tables import TABLES, TableRouterState
from tests.conftest import FIXED_NOW
from tests.unit.processors.test_state_ordering import (
    SUBJECTS,
    Change,
    _answers,
    _apply,
    _changes,
    _memory,
    _total_order,
)


class _Changelog:
    """What the router's changelog topics would hold: every record, in the order written."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, Any]] = []

    def __call__(self, table: str, key: str, value: Any) -> None:
        self.records.append((table, key, value))

    def compacted(self) -> dict[str, dict[str, Any]]:
        """The tables a worker recovering from the compacted changelogs rebuilds."""
        tables: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
        for table, key, value in self.records:
            tables[table][key] = value
        return tables


def _tables() -> tuple[TableRouterState, _Changelog]:
    changelog = _Changelog()
    return TableRouterState({name: {} for name in TABLES}, changelog), changelog


@settings(max_examples=300, deadline=None)
@given(changes=_changes, data=st.data())
def test_tables_give_the_state_of_the_total_order_and_recover_it_from_their_changelog(
        changes: list[Change], data: st.DataObject) -> None:
    in_order = _memory()
    for change in sorted(changes, key=_total_order):
        _apply(in_order, change)
    arrival = data.draw(st.permutations(changes), label="arrival")
    live, changelog = _tables()
    sqlite_conflicts = []
    sqlite_live = _memory()
    conflicts = []
    for change in arrival:
        conflicts.append(_apply(live, change))
        sqlite_conflicts.append(_apply(sqlite_live, change))
    written = len(changelog.records)
    for change in data.draw(st.lists(st.sampled_from(changes), max_size=5), label="redelivered"):
        _apply(live, change)
    recovered = TableRouterState(changelog.compacted(), _Changelog())

    assert _answers(live) == _answers(in_order) == _answers(recovered)
    assert conflicts == sqlite_conflicts, "both stores report the same conflicts"
    assert len(changelog.records) == written, "a redelivered change writes nothing to the changelog"


def test_a_redelivered_task_is_decided_as_the_first_time_for_marac() -> None:
    state, _ = _tables()
    state.record_marac_referral(SUBJECTS[0], FIXED_NOW.date() - timedelta(days=100), event_id="earlier")
    state.record_marac_referral(SUBJECTS[0], FIXED_NOW.date(), event_id="this")
    assert state.last_marac_referral(SUBJECTS[0], excluding_event="this") == FIXED_NOW.date() - timedelta(days=100)
    assert state.last_marac_referral(SUBJECTS[0]) == FIXED_NOW.date()


def test_a_referral_of_unknown_event_always_counts() -> None:
    state, _ = _tables()
    state.record_marac_referral(SUBJECTS[0], FIXED_NOW.date())
    assert state.last_marac_referral(SUBJECTS[0], excluding_event="any") == FIXED_NOW.date()


def test_a_store_missing_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="marac"):
        TableRouterState({"enrolment": {}, "consent": {}, "incidents": {}}, _Changelog())

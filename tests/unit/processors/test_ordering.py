"""
The merge rules every router store shares: pure, idempotent and independent of arrival order.

SQLite and Faust tables keep a child's enrolment and a subject's consent by
calling the same two functions, so a redelivered change (as every stage of an
at-least-once router may see) must leave the state as it was, and two changes
merged in either order must agree.
"""

from __future__ import annotations

import itertools

from safebus.processors.ordering import (
    UNRESOLVED,
    ConsentChange,
    EnrolmentChange,
    merge_consent,
    merge_enrolment,
    resolve_enrolment,
)

CHILD = "subj_" + "c" * 32
VICTIM = "subj_" + "a" * 32
MONDAY = "2026-06-01T09:00:00.000000+00:00"
TUESDAY = "2026-06-02T09:00:00.000000+00:00"


def _enrolment(event_id: str, setting: str | None, at: str = TUESDAY, previous: str | None = None) -> EnrolmentChange:
    return EnrolmentChange(setting=setting, previous=previous, occurred_at=at, recorded_at=at, event_id=event_id)


def _consent(event_id: str, status: str, at: str = TUESDAY) -> ConsentChange:
    return ConsentChange(status=status, occurred_at=at, recorded_at=at, event_id=event_id)


def _merged_enrolments(changes: list[EnrolmentChange]) -> tuple[EnrolmentChange, ...]:
    known: tuple[EnrolmentChange, ...] = ()
    for change in changes:
        known, _ = merge_enrolment(known, change, CHILD)
    return known


def test_an_older_enrolment_change_never_replaces_a_newer_one() -> None:
    known, conflict = merge_enrolment([_enrolment("new", "900103")], _enrolment("late", "900101", at=MONDAY), CHILD)
    assert [c.event_id for c in known] == ["new"]
    assert conflict is None


def test_enrolments_merge_to_the_same_changes_in_any_order_and_on_redelivery() -> None:
    changes = [_enrolment("a", "900101", at=MONDAY), _enrolment("b", "900103"), _enrolment("c", "900104"),
               _enrolment("b", "900103")]
    results = {_merged_enrolments(list(order)) for order in itertools.permutations(changes)}
    assert len(results) == 1
    (only,) = results
    assert [c.event_id for c in only] == ["b", "c"]
    assert resolve_enrolment(only) == UNRESOLVED


def test_a_conflicting_enrolment_is_reported_with_every_change_at_its_point() -> None:
    _, conflict = merge_enrolment([_enrolment("a", "900101")], _enrolment("b", "900104"), CHILD)
    assert conflict is not None
    assert conflict.changes == (("a", "900101"), ("b", "900104"))
    assert conflict.resolved_to == UNRESOLVED


def test_a_move_naming_the_setting_it_leaves_is_no_conflict() -> None:
    known, conflict = merge_enrolment([_enrolment("a", "900101")],
                                      _enrolment("b", "900104", previous="900101"), CHILD)
    assert conflict is None
    assert resolve_enrolment(known) == "900104"


def test_a_withdrawal_at_the_same_instant_as_a_grant_stands_whichever_comes_first() -> None:
    grant, withdrawal = _consent("g", "given"), _consent("w", "withdrawn")
    for first, second in ((grant, withdrawal), (withdrawal, grant)):
        stands, _ = merge_consent(None, first, VICTIM, "idva-support")
        stands, conflict = merge_consent(stands, second, VICTIM, "idva-support")
        assert stands == withdrawal
        assert conflict is not None
        assert conflict.resolved_to == "withdrawn"
        assert conflict.changes == (("g", "given"), ("w", "withdrawn"))


def test_a_redelivered_or_older_consent_changes_nothing_and_reports_nothing() -> None:
    current = _consent("w", "withdrawn")
    assert merge_consent(current, current, VICTIM, "idva-support") == (current, None)
    assert merge_consent(current, _consent("g", "given", at=MONDAY), VICTIM, "idva-support") == (current, None)

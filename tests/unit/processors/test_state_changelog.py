"""
The router's state survives the loss of its disk: every change goes to a changelog and comes back from it.

What the rules remember — a child's setting after a move, a victim's consent,
incident history and MARAC referrals — must not vanish with one machine.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from safebus.processors.state import SqliteRouterState
from safebus.processors.state_changelog import ChangelogRouterState, restore
from safebus.records import Output, Record
from tests.conftest import FIXED_NOW

CHILD, VICTIM = "subj_" + "c" * 32, "subj_" + "v" * 32


def _records(outputs: list[Output]) -> list[Record]:
    return [Record(topic=o.topic, partition=0, offset=n, key=o.key, value=o.value) for n, o in enumerate(outputs)]


def _changed(state: ChangelogRouterState) -> list[Output]:
    state.set_enrolment(CHILD, "900101", FIXED_NOW - timedelta(days=30))
    state.set_enrolment(CHILD, "900103", FIXED_NOW)
    state.set_consent(VICTIM, "voluntary-sector-referral", "given", FIXED_NOW - timedelta(days=2))
    state.set_consent(VICTIM, "voluntary-sector-referral", "withdrawn", FIXED_NOW)
    for n in range(3):
        state.record_incident(VICTIM, f"incident-{n}", FIXED_NOW.date() - timedelta(days=40 * n))
    state.record_marac_referral(VICTIM, date(2026, 6, 1))
    return state.drain()


def _answers(state: SqliteRouterState) -> tuple[object, ...]:
    return (state.enrolment(CHILD), state.consent(VICTIM, "voluntary-sector-referral"),
            state.incidents_since(VICTIM, FIXED_NOW.date() - timedelta(days=365)), state.last_marac_referral(VICTIM))


def test_a_new_machine_restored_from_the_changelog_answers_as_the_old_one(tmp_path: Path) -> None:
    """Replaying the changes into an empty store gives the same enrolment, consent, history and MARAC date."""
    old = ChangelogRouterState(tmp_path / "old.sqlite", topic="t.router.state")
    changes = _changed(old)
    assert all(o.topic == "t.router.state" for o in changes)
    fresh = SqliteRouterState(tmp_path / "new.sqlite")
    assert _answers(fresh) == (None, "none", 0, None)
    restore(fresh, _records(changes))
    assert _answers(fresh) == _answers(old) == ("900103", "withdrawn", 3, date(2026, 6, 1))


def test_replaying_twice_or_out_of_order_changes_nothing(tmp_path: Path) -> None:
    """Changes are idempotent and newest-wins: a compacted topic replayed in any order gives the same state."""
    old = ChangelogRouterState(tmp_path / "old.sqlite", topic="t.router.state")
    changes = _changed(old)
    fresh = SqliteRouterState(tmp_path / "new.sqlite")
    restore(fresh, _records(list(reversed(changes))))
    restore(fresh, _records(changes))
    assert _answers(fresh) == _answers(old)


def test_the_changelog_holds_tokens_and_dates_only(tmp_path: Path) -> None:
    """No names: the changelog is keyed and filled with pseudonymous tokens, URNs and dates."""
    changes = _changed(ChangelogRouterState(tmp_path / "s.sqlite", topic="t.router.state"))
    keys = {o.key.decode().split("|")[0] for o in changes}
    assert keys == {"enrolment", "consent", "incident", "marac"}
    assert not (ChangelogRouterState(tmp_path / "s.sqlite", topic="t").drain()), "draining empties the queue"


def test_marac_referrals_come_back_by_event_and_older_records_without_one_still_count(tmp_path: Path) -> None:
    """A restored router still decides a redelivered event as the first time (it knows which referral was its)."""
    old = ChangelogRouterState(tmp_path / "old.sqlite", topic="t.router.state")
    old.record_marac_referral(VICTIM, date(2026, 9, 1), event_id="incident-9")
    changes = old.drain()
    written_before = Output(topic="t.router.state", key=f"marac|{VICTIM}".encode(),
                            value=b'{"day":"2026-03-01","format":"safebus-router-state/2","op":"marac","subject":"'
                                  + VICTIM.encode() + b'"}')
    new = SqliteRouterState(tmp_path / "new.sqlite")
    assert restore(new, _records([written_before, *changes])) == 2
    assert new.last_marac_referral(VICTIM) == date(2026, 9, 1)
    assert new.last_marac_referral(VICTIM, excluding_event="incident-9") == date(2026, 3, 1), \
        "its own referral left out, the one from before referrals were kept by event still counted"

"""
The router's state has one total order: ties, late events and any arrival order give the same answers.

A supplier exporting in batches stamps many records with the same instant: a
consent and its withdrawal, an enrolment and the move away from it.  None of
them may be lost, the safer change stands where they disagree, the
disagreement is reported for the audit log, and a router rebuilt from its
compacted changelog answers exactly as the one that wrote it.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safebus.processors.ordering import CONSENT_SAFETY, UNRESOLVED
from safebus.processors.reference import apply_reference
from safebus.processors.state import Conflict, SqliteRouterState
from safebus.processors.state_changelog import ChangelogRouterState, restore
from safebus.processors.state_tables import TableRouterState
from safebus.pseudonyms import Tokeniser
from safebus.records import Output, Record
from safebus.schemas import consent, education
from safebus.schemas._base import Event, event_metadata
from tests.conftest import FIXED_NOW

CHILDREN = ("subj_" + "c" * 32, "subj_" + "d" * 32)
SUBJECTS = ("subj_" + "a" * 32, "subj_" + "b" * 32)
PURPOSES = ("voluntary-sector-referral", "idva-support")
SETTINGS = ("900101", "900103", "900104", "home-educated", None)
BST = timezone(timedelta(hours=1))
T = FIXED_NOW

STATS: Counter[str] = Counter()
"""What the ordering property tried and found (printed with ``-s``)."""


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if STATS:
        print("\nordering property:", dict(sorted(STATS.items())))


def _memory() -> SqliteRouterState:
    return SqliteRouterState(Path(":memory:"))


# Changes as a partner's reference events would cause them.

@dataclass(frozen=True)
class Consent:
    subject: str
    purpose: str
    status: str
    at: datetime
    recorded_at: datetime
    event_id: str


@dataclass(frozen=True)
class Enrolment:
    child: str
    setting: str | None
    previous: str | None
    at: datetime
    recorded_at: datetime
    event_id: str


@dataclass(frozen=True)
class Incident:
    subject: str
    event_id: str
    day: date


@dataclass(frozen=True)
class Marac:
    subject: str
    day: date


Change = Consent | Enrolment | Incident | Marac


def _apply(state: SqliteRouterState | TableRouterState, change: Change) -> Conflict | None:
    if isinstance(change, Consent):
        return state.set_consent(change.subject, change.purpose, change.status, change.at,
                                 recorded_at=change.recorded_at, event_id=change.event_id)
    if isinstance(change, Enrolment):
        return state.set_enrolment(change.child, change.setting, change.at, recorded_at=change.recorded_at,
                                   event_id=change.event_id, previous=change.previous)
    if isinstance(change, Incident):
        state.record_incident(change.subject, change.event_id, change.day)
    else:
        state.record_marac_referral(change.subject, change.day)
    return None


def _total_order(change: Change) -> tuple[object, ...]:
    """The documented key: (occurred_at, safety, recorded_at, event id); history and MARAC commute."""
    if isinstance(change, Consent):
        return (0, change.at, CONSENT_SAFETY[change.status], change.recorded_at, change.event_id)
    if isinstance(change, Enrolment):
        return (0, change.at, 0, change.recorded_at, change.event_id)
    return (1, str(change))


def _answers(state: SqliteRouterState | TableRouterState) -> tuple[object, ...]:
    year_ago = T.date() - timedelta(days=365)
    return (tuple(state.enrolment(c) for c in CHILDREN),
            tuple(state.consent_change(s, p) for s in SUBJECTS for p in PURPOSES),
            tuple(state.incidents_since(s, year_ago) for s in SUBJECTS),
            tuple(state.last_marac_referral(s) for s in SUBJECTS))


def _instant(minutes: int, in_bst: bool) -> datetime:
    """One of few instants (so ties are common), sometimes written in UK summer time (same instant)."""
    at = T + timedelta(minutes=minutes)
    return at.astimezone(BST) if in_bst else at


_instants = st.builds(_instant, st.integers(0, 2), st.booleans())
_recorded = st.integers(0, 1).map(lambda m: timedelta(minutes=m))
_ids = st.integers(0, 2**64).map(lambda n: str(uuid.UUID(int=n)))
_consents = st.builds(lambda s, p, status, at, lag, i: Consent(s, p, status, at, at + lag, i),
                      st.sampled_from(SUBJECTS), st.sampled_from(PURPOSES), st.sampled_from(list(CONSENT_SAFETY)),
                      _instants, _recorded, _ids)
_enrolments = st.builds(lambda c, setting, previous, at, lag, i: Enrolment(c, setting, previous, at, at + lag, i),
                        st.sampled_from(CHILDREN), st.sampled_from(SETTINGS),
                        st.sampled_from((None, "900101", "900103")), _instants, _recorded, _ids)
_incidents = st.builds(Incident, st.sampled_from(SUBJECTS), st.sampled_from(("i-1", "i-2", "i-3")),
                       st.integers(0, 400).map(lambda d: T.date() - timedelta(days=d)))
_maracs = st.builds(Marac, st.sampled_from(SUBJECTS), st.integers(0, 400).map(lambda d: T.date() - timedelta(days=d)))
_changes = st.lists(st.one_of(_consents, _enrolments, _incidents, _maracs), min_size=4, max_size=30,
                    unique_by=lambda c: getattr(c, "event_id", str(c)))


def _expected_consent(changes: list[Change], subject: str, purpose: str) -> str:
    """The spec: at the latest instant for (subject, purpose), the safest status stands."""
    mine = [c for c in changes if isinstance(c, Consent) and (c.subject, c.purpose) == (subject, purpose)]
    if not mine:
        return "none"
    point = max(c.at for c in mine)
    return max((c.status for c in mine if c.at == point), key=CONSENT_SAFETY.__getitem__)


def _compacted(outputs: list[Output], rng: random.Random) -> list[Record]:
    """What a compacted changelog topic keeps (the last record per key), read back in any order."""
    last = {o.key: o for o in outputs}
    records = [Record(topic=o.topic, partition=0, offset=n, key=o.key, value=o.value)
               for n, o in enumerate(last.values())]
    rng.shuffle(records)
    return records


@settings(max_examples=400, deadline=None)
@given(changes=_changes, data=st.data())
def test_any_interleaving_and_any_tie_gives_the_state_of_the_total_order(changes: list[Change],
                                                                         data: st.DataObject) -> None:
    """
    Whatever order the same changes arrive in — with redeliveries, ties on every timestamp, mixed UTC offsets —
    the state equals applying them in the documented total order; a compacted changelog replayed in any order
    restores that state; and at the latest instant the safer consent stands and a conflicting move is unresolved.
    """
    in_order = _memory()
    for change in sorted(changes, key=_total_order):
        _apply(in_order, change)

    arrival = data.draw(st.permutations(changes), label="arrival")
    redelivered = data.draw(st.lists(st.sampled_from(changes), max_size=5), label="redelivered")
    live = ChangelogRouterState(Path(":memory:"), topic="t.router.state")
    conflicts = [conflict for change in [*arrival, *redelivered] if (conflict := _apply(live, change))]
    outputs = live.drain()

    restored = _memory()
    restore(restored, _compacted(outputs, random.Random(data.draw(st.integers(0, 2**32), label="replay"))))
    twice = _memory()
    restore(twice, _compacted(outputs, random.Random(1)) + _compacted(outputs, random.Random(2)))

    assert _answers(live) == _answers(in_order) == _answers(restored) == _answers(twice)

    for subject in SUBJECTS:
        for purpose in PURPOSES:
            assert live.consent(subject, purpose) == _expected_consent(changes, subject, purpose)
    reported = {(c.kind, c.subject, c.purpose) for c in conflicts}
    for subject in SUBJECTS:
        for purpose in PURPOSES:
            mine = [c for c in changes if isinstance(c, Consent) and (c.subject, c.purpose) == (subject, purpose)]
            point = max((c.at for c in mine), default=None)
            if len({c.status for c in mine if c.at == point}) > 1:
                assert ("consent", subject, purpose) in reported, "a same-instant disagreement is reported"
    for child in CHILDREN:
        if live.enrolment(child) == UNRESOLVED:
            assert ("enrolment", child, None) in reported

    STATS["examples"] += 1
    STATS["changes applied"] += len(arrival) + len(redelivered)
    STATS["changes sharing an instant with another of the same key"] += sum(
        1 for c in changes if isinstance(c, Consent | Enrolment) and any(
            o is not c and type(o) is type(c) and o.at == c.at and _key(o) == _key(c) for o in changes))
    for conflict in conflicts:
        STATS[f"conflicts: {conflict.kind} -> {conflict.resolved_to}"] += 1
    STATS["examples with an unresolved enrolment"] += any(live.enrolment(c) == UNRESOLVED for c in CHILDREN)


def _key(change: Consent | Enrolment) -> tuple[str, ...]:
    return (change.subject, change.purpose) if isinstance(change, Consent) else (change.child,)


# The same, from the reference events partners publish (through `apply_reference`).

TOKENISER = Tokeniser(key=b"k" * 32)
PUPILS = (education.ChildIdentity(first_name="Ivy", surname="Calloway", date_of_birth=date(2016, 3, 4)),
          education.ChildIdentity(first_name="Kit", surname="Calloway", date_of_birth=date(2013, 6, 1)))
URNS = ("900101", "900103", "900104")


def _meta(model: type[Event], producer: str, at: datetime, lag: timedelta, n: int) -> dict[str, Any]:
    return event_metadata(model, producer=producer, occurred_at=at, recorded_at=at + lag,
                          event_id=str(uuid.UUID(int=n)))


def _consent_event(subject: str, purpose: str, status: str, at: datetime, lag: timedelta, n: int) -> Event:
    common: dict[str, Any] = {"consent_id": "CN-1", "subject": subject, "purpose": consent.Purpose(purpose),
                              "recorded_by": consent.RecordedBy(agency="northdale-idva", staff_id="IDVA-1"),
                              "how_obtained": consent.HowObtained.VERBAL}
    if status == "withdrawn":
        return consent.ConsentWithdrawn(**_meta(consent.ConsentWithdrawn, "northdale-idva", at, lag, n), **common,
                                        withdrawn_at=at)
    return consent.ConsentRecorded(**_meta(consent.ConsentRecorded, "northdale-idva", at, lag, n), **common,
                                   given=status == "given", scope=consent.Scope(recipient_kinds=("da-hub",)),
                                   recorded_on=at)


def _education_event(kind: int, pupil: int, urn: str, previous: str | None, at: datetime, lag: timedelta,
                     n: int) -> Event:
    la, child = "northdale-childrens-services", PUPILS[pupil]
    if kind == 0:
        return education.EnrolmentRecorded(**_meta(education.EnrolmentRecorded, la, at, lag, n), child=child,
                                           setting_urn=urn, from_date=at.date())
    if kind == 1:
        return education.ElectiveHomeEducationRecorded(
            **_meta(education.ElectiveHomeEducationRecorded, la, at, lag, n), child=child, from_date=at.date(),
            previous_setting_urn=previous, la_officer=education.LaOfficer(name="Otis Redfern", email="e@nd.example"))
    return education.EnrolmentChanged(**_meta(education.EnrolmentChanged, la, at, lag, n), child=child,
                                      previous_setting_urn=previous, new_setting_urn=urn, effective_date=at.date(),
                                      reason=education.MoveReason.MOVED_SCHOOL)


_events = st.lists(st.one_of(
    st.builds(_consent_event, st.sampled_from(SUBJECTS), st.sampled_from(PURPOSES),
              st.sampled_from(list(CONSENT_SAFETY)), _instants, _recorded, st.integers(0, 2**64)),
    st.builds(_education_event, st.integers(0, 2), st.integers(0, 1), st.sampled_from(URNS),
              st.sampled_from((None, *URNS)), _instants, _recorded, st.integers(0, 2**64)),
), min_size=2, max_size=20, unique_by=lambda e: e.event_id)


def _event_order(event: Event) -> tuple[object, ...]:
    """The documented key for a reference event: (occurred_at, safety, recorded_at, event id)."""
    status = ("withdrawn" if isinstance(event, consent.ConsentWithdrawn) else
              "given" if isinstance(event, consent.ConsentRecorded) and event.given else "refused")
    safety = CONSENT_SAFETY[status] if isinstance(event, consent.ConsentRecorded | consent.ConsentWithdrawn) else 0
    return event.occurred_at, safety, event.recorded_at, event.event_id


def _event_answers(state: SqliteRouterState) -> tuple[object, ...]:
    pupils = [TOKENISER.person(first_name=c.first_name, surname=c.surname, date_of_birth=c.date_of_birth)
              for c in PUPILS]
    return (tuple(state.enrolment(p) for p in pupils),
            tuple(state.consent(s, p) for s in SUBJECTS for p in PURPOSES))


@settings(max_examples=120, deadline=None)
@given(events=_events, data=st.data())
def test_reference_events_in_any_order_give_the_state_of_the_total_order(events: list[Event],
                                                                         data: st.DataObject) -> None:
    """Partners' consent and education events, tied and interleaved: the same state as in the documented order."""
    in_order = _memory()
    for event in sorted(events, key=_event_order):
        apply_reference(event, in_order, TOKENISER)
    live = ChangelogRouterState(Path(":memory:"), topic="t.router.state")
    for event in data.draw(st.permutations(events), label="arrival"):
        applied = apply_reference(event, live, TOKENISER)
        assert applied is not None
        STATS[f"events: conflicts met ({applied.conflict.kind})" if applied.conflict else "events: no conflict"] += 1
    restored = _memory()
    restore(restored, _compacted(live.drain(), random.Random(0)))
    assert _event_answers(live) == _event_answers(in_order) == _event_answers(restored)
    STATS["events: examples"] += 1


# The bugs as filed, one by one.

def test_a_withdrawal_stamped_like_the_consent_it_withdraws_stands_either_way() -> None:
    """Consent and its withdrawal at the same instant: withdrawn, whichever arrives first, and it is reported."""
    subject, purpose = SUBJECTS[0], PURPOSES[0]
    for order in (("given", "withdrawn"), ("withdrawn", "given")):
        state = _memory()
        results = [state.set_consent(subject, purpose, status, T, event_id=status) for status in order]
        assert state.consent(subject, purpose) == "withdrawn"
        conflict = results[1]
        assert conflict is not None
        assert (conflict.kind, conflict.changes, conflict.resolved_to) == (
            "consent", (("given", "given"), ("withdrawn", "withdrawn")), "withdrawn")


def test_a_move_stamped_like_the_enrolment_it_moves_from_is_applied_either_way() -> None:
    """Enrolment at 900101 and the move 900101 -> 900103 at the same instant: the child is at 900103."""
    child = CHILDREN[0]
    enrolment = {"setting": "900101", "previous": None, "event_id": "enrolment"}
    move = {"setting": "900103", "previous": "900101", "event_id": "move"}
    for first, second in ((enrolment, move), (move, enrolment)):
        state = _memory()
        assert state.set_enrolment(child, first["setting"], T, event_id=first["event_id"],
                                   previous=first["previous"]) is None
        assert state.set_enrolment(child, second["setting"], T, event_id=second["event_id"],
                                   previous=second["previous"]) is None, "a move from the enrolment is no conflict"
        assert state.enrolment(child) == "900103"


def test_conflicting_enrolments_at_one_instant_leave_the_setting_unresolved_until_a_later_one() -> None:
    """Two schools for the same instant: unresolved (so the MASH desk decides), then settled by later news."""
    state = _memory()
    state.set_enrolment(CHILDREN[0], "900101", T, event_id="a")
    conflict = state.set_enrolment(CHILDREN[0], "900104", T, event_id="b")
    assert state.enrolment(CHILDREN[0]) == UNRESOLVED
    assert conflict is not None
    assert (conflict.changes, conflict.resolved_to) == ((("a", "900101"), ("b", "900104")), UNRESOLVED)
    state.set_enrolment(CHILDREN[0], "900104", T + timedelta(days=1), event_id="c")
    assert state.enrolment(CHILDREN[0]) == "900104"


def test_instants_compare_as_instants_whatever_their_utc_offset() -> None:
    """10:00 in UK summer time is before 09:30 UTC: the later instant wins, not the larger-looking text."""
    state = _memory()
    state.set_consent(SUBJECTS[0], PURPOSES[0], "withdrawn", datetime(2026, 6, 1, 9, 30, tzinfo=UTC))
    state.set_consent(SUBJECTS[0], PURPOSES[0], "given", datetime(2026, 6, 1, 10, 0, tzinfo=BST))
    assert state.consent(SUBJECTS[0], PURPOSES[0]) == "withdrawn"


def test_a_late_older_event_does_not_become_the_compacted_state(tmp_path: Path) -> None:
    """After a late, older enrolment, the changelog's last record is still the newer state, so replay keeps it."""
    live = ChangelogRouterState(tmp_path / "live.sqlite", topic="t.router.state")
    live.set_enrolment(CHILDREN[0], "900103", T, event_id="new")
    live.set_enrolment(CHILDREN[0], "900101", T - timedelta(days=30), event_id="late")
    live.set_consent(SUBJECTS[0], PURPOSES[0], "withdrawn", T, event_id="new")
    live.set_consent(SUBJECTS[0], PURPOSES[0], "given", T - timedelta(days=3), event_id="late")
    restored = _memory()
    restore(restored, _compacted(live.drain(), random.Random(0)))
    assert (restored.enrolment(CHILDREN[0]), restored.consent(SUBJECTS[0], PURPOSES[0])) == ("900103", "withdrawn")


def test_a_store_written_before_the_total_order_is_carried_over(tmp_path: Path) -> None:
    """The router's existing state file (one newest-wins row per key) still answers after the upgrade."""
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE enrolments (child TEXT PRIMARY KEY, setting TEXT, at TEXT NOT NULL);
            CREATE TABLE consents (subject TEXT, purpose TEXT, status TEXT NOT NULL, at TEXT NOT NULL,
                                   PRIMARY KEY (subject, purpose));""")
        db.execute("INSERT INTO enrolments VALUES (?, '900104', ?)", (CHILDREN[0], T.isoformat()))
        db.execute("INSERT INTO consents VALUES (?, ?, 'given', ?)", (SUBJECTS[0], PURPOSES[0], T.isoformat()))
    db.close()
    state = SqliteRouterState(path)
    assert (state.enrolment(CHILDREN[0]), state.consent(SUBJECTS[0], PURPOSES[0])) == ("900104", "given")
    state.set_consent(SUBJECTS[0], PURPOSES[0], "withdrawn", T, event_id="w")
    assert SqliteRouterState(path).consent(SUBJECTS[0], PURPOSES[0]) == "withdrawn"


def test_a_format_1_changelog_is_still_restored() -> None:
    """Records written before the total order (one change each) replay into the new store."""
    old = [b'{"format": "safebus-router-state/1", "op": "enrolment", "child": "%s", "setting": "900103", '
           b'"at": "2026-11-18T21:30:00+00:00"}' % CHILDREN[0].encode(),
           b'{"format": "safebus-router-state/1", "op": "consent", "subject": "%s", "purpose": "idva-support", '
           b'"status": "given", "at": "2026-11-18T21:30:00+00:00"}' % SUBJECTS[0].encode()]
    state = _memory()
    assert restore(state, [Record(topic="t", partition=0, offset=n, key=b"k", value=v)
                           for n, v in enumerate(old)]) == 2
    assert (state.enrolment(CHILDREN[0]), state.consent(SUBJECTS[0], "idva-support")) == ("900103", "given")


# An enrolment move prompts the old setting only if it changed where the child is.

def _moves(events: list[Event], state: SqliteRouterState) -> list[str | None]:
    """Apply `events` in turn; for each, the new setting of the `audit.enrolment-moved` it gave (or None)."""
    from safebus.processors.reference import reference_facts
    from safebus.schemas.audit import EnrolmentMoved

    found: list[str | None] = []
    for event in events:
        applied = apply_reference(event, state, TOKENISER)
        assert applied is not None
        facts = reference_facts(event, applied, TOKENISER, producer="safebus-router", at=T)
        moved = [f for f in facts if isinstance(f, EnrolmentMoved)]
        assert len(moved) <= 1
        found.append(moved[0].new_setting_urn if moved else None)
    return found


def test_a_move_older_than_the_current_enrolment_prompts_no_file_transfer() -> None:
    """Enrolled at 900103 on Tuesday; a move 900101 -> 900104 dated Monday arrives late: no enrolment-moved fact,
    and the child stays at 900103; a move dated Wednesday is audited as before."""
    state = _memory()
    enrolled = _education_event(0, 0, "900103", None, T, timedelta(0), 1)
    stale = _education_event(2, 0, "900104", "900101", T - timedelta(days=1), timedelta(0), 2)
    current = _education_event(2, 0, "900104", "900103", T + timedelta(days=1), timedelta(0), 3)
    assert _moves([enrolled, stale], state) == [None, None]
    assert moved_to(state, stale) == "900103"
    assert _moves([current, current], state) == ["900104", "900104"], "a redelivery repeats the same fact (same id)"


def test_a_move_superseded_or_left_unresolved_at_its_own_instant_prompts_nothing() -> None:
    """At one instant, a move away from the move's destination supersedes it; a conflicting enrolment leaves the
    setting unresolved: neither earlier move is current, so neither is audited as a move when it arrives."""
    onward = _education_event(2, 0, "900104", "900103", T, timedelta(0), 1)
    superseded = _education_event(2, 0, "900103", "900101", T, timedelta(0), 2)
    assert _moves([onward, superseded], _memory()) == ["900104", None]
    elsewhere = _education_event(0, 0, "900101", None, T, timedelta(0), 3)
    conflicting = _education_event(2, 0, "900104", "900103", T, timedelta(0), 4)
    assert _moves([elsewhere, conflicting], _memory()) == [None, None]


@settings(max_examples=120, deadline=None)
@given(events=_events)
def test_a_move_is_audited_exactly_when_it_is_where_the_child_now_is(events: list[Event]) -> None:
    """In any arrival order: a move older than the child's newest known change is never audited; a move newer
    than all of them always is; whenever a move is audited, the child's enrolment is the move's destination."""
    state = _memory()
    newest: dict[str, datetime] = {}
    for event, moved in zip(events, _moves_one_by_one(events, state), strict=True):
        if not isinstance(event, education.EnrolmentRecorded | education.EnrolmentChanged
                          | education.ElectiveHomeEducationRecorded):
            continue
        child = event.child.first_name
        before, newest[child] = newest.get(child), max(newest.get(child, event.occurred_at), event.occurred_at)
        if not isinstance(event, education.EnrolmentChanged):
            assert moved is None
            continue
        if before is not None and event.occurred_at < before:
            assert moved is None, "a stale move prompts nobody"
            STATS["moves: stale, not audited"] += 1
        elif before is None or event.occurred_at > before:
            assert moved == event.new_setting_urn, "a newest move is audited"
            STATS["moves: newest, audited"] += 1
        else:
            STATS[f"moves: tied, {'audited' if moved else 'not audited'}"] += 1
        if moved is not None:
            assert moved == moved_to(state, event)


def _moves_one_by_one(events: list[Event], state: SqliteRouterState) -> Iterator[str | None]:
    for event in events:
        [moved] = _moves([event], state)
        yield moved


def moved_to(state: SqliteRouterState, event: Event) -> str | None:
    """Where the state now says the moved child is."""
    assert isinstance(event, education.EnrolmentChanged)
    child = event.child
    return state.enrolment(TOKENISER.person(first_name=child.first_name, surname=child.surname,
                                            date_of_birth=child.date_of_birth))

"""
The audit projection on a real PostgreSQL server answers exactly as it does on SQLite.

PostgreSQL is selected by configuration (`AuditProjection.from_url`), so
nothing but a test proves that the one set of portable statements behaves the
same on both engines.  The unit tests prove the SQLite projection against hand
counts of the synthetic November in `tests.unit.consumers.audit.test_projection`; here
the same facts are projected into both engines and every answer is compared
object for object (rows with their facts, chronologies, flows, monthly
figures), so a PostgreSQL difference shows up as a diff, not as a figure
someone has to recount.

The server is a throwaway cluster (`tests.postgresql_server`) whose collation
is ICU ``en-GB``, so any reliance on byte order for text would show.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from safebus.consumers.audit.facts import leaf_bytes
from safebus.consumers.audit.projection import UNREADABLE, AuditProjection, Chronology, Filters, QueryError
from safebus.consumers.audit.reports import AuditedReader, LedgerViewSink, Viewer
from tests.postgresql_server import Server, postgresql_fixture
from tests.unit.consumers.audit.test_projection import (
    ADA,
    FACTS,
    NOW,
    OFFICER,
    PEOPLE,
    QUERY_CASES,
    RHEA,
    SCHOOL_A,
    TOKEN,
    TOKENISER,
    Person,
    append,
    dead_letter,
    new_ledger,
    t,
)

_T = TypeVar("_T")

postgresql = postgresql_fixture()


@dataclass(frozen=True)
class Engines:
    """The same synthetic log projected into SQLite and into PostgreSQL."""

    sqlite: AuditProjection
    postgresql: AuditProjection

    def same(self, ask: Callable[[AuditProjection], _T]) -> _T:
        """Ask both engines; assert PostgreSQL answers exactly as SQLite; return the answer."""
        expected = ask(self.sqlite)
        assert ask(self.postgresql) == expected
        return expected


@pytest.fixture(scope="module")
def engines(postgresql: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    """The synthetic November (with a little October) in one ledger, projected into both engines."""
    folder = tmp_path_factory.mktemp("engines")
    ledger = new_ledger(folder / "ledger.sqlite")
    append(ledger, FACTS)
    pair = Engines(sqlite=AuditProjection(folder / "projection.sqlite"),
                   postgresql=AuditProjection.from_url(postgresql.new_database()))
    try:
        assert pair.same(lambda p: p.catch_up(ledger)) == len(FACTS)
        yield pair
    finally:
        pair.sqlite.close()
        pair.postgresql.close()
        ledger.close()


@contextlib.contextmanager
def _opened(location: Path | str) -> Iterator[AuditProjection]:
    """A projection in SQLite file `location` or at PostgreSQL URL `location`, closed afterwards."""
    projection = AuditProjection(location) if isinstance(location, Path) else AuditProjection.from_url(location)
    try:
        yield projection
    finally:
        projection.close()


def _both(postgresql: Server, folder: Path, scenario: Callable[[Path | str, Path], list[object]]) -> list[object]:
    """
    Run `scenario` on a fresh SQLite file and a fresh PostgreSQL database; assert both observed the same.

    `scenario` gets where its projection lives and a folder of its own (for
    its ledger), and returns what it saw, in order.
    """
    (folder / "sqlite").mkdir()
    (folder / "postgresql").mkdir()
    expected = scenario(folder / "sqlite" / "projection.sqlite", folder / "sqlite")
    assert scenario(postgresql.new_database(), folder / "postgresql") == expected
    return expected


class TestCatchUp:
    def test_is_idempotent_and_resumes_after_reopening(self, postgresql: Server, tmp_path: Path) -> None:
        """Catch-up, again (nothing new), reopen after one more leaf (just that one): the same on both engines."""
        def scenario(location: Path | str, folder: Path) -> list[object]:
            ledger = new_ledger(folder / "ledger.sqlite")
            append(ledger, FACTS)
            seen: list[object] = []
            with _opened(location) as projection:
                seen += [projection.catch_up(ledger), projection.catch_up(ledger), projection.next_index]
                leaves = [(leaf.index, leaf.body) for leaf in ledger.leaves()]
                before = projection.query(Filters(limit=1000))
                seen += [projection.project(leaves), projection.project(leaves[3:5]),
                         projection.query(Filters(limit=1000)) == before, projection.next_index]
            append(ledger, [dead_letter(9, t(29, 9), "malformed")])
            with _opened(location) as reopened:
                seen += [reopened.next_index, reopened.catch_up(ledger), reopened.next_index,
                         reopened.query(Filters(fact_type="audit.dead-lettered"))]
            ledger.close()
            return seen

        seen = _both(postgresql, tmp_path, scenario)
        assert seen[:7] == [len(FACTS), 0, len(FACTS), 0, 0, True, len(FACTS)]
        assert seen[7:10] == [len(FACTS), 1, len(FACTS) + 1]

    def test_projects_leaves_in_any_batches_and_keeps_unreadable_ones(self, postgresql: Server,
                                                                      tmp_path: Path) -> None:
        """Out-of-order batches stop `next_index` at the first gap; bytes that are not JSON keep their index."""
        def scenario(location: Path | str, folder: Path) -> list[object]:
            bodies = [(i, leaf_bytes(f)) for i, f in enumerate(FACTS[:4])]
            with _opened(location) as projection:
                return [projection.project(bodies[2:]), projection.next_index,
                        projection.project([bodies[0]]), projection.next_index,
                        projection.project([bodies[1], (4, b"\xff not json")]), projection.next_index,
                        projection.query(Filters(fact_type=UNREADABLE)), projection.query(Filters(limit=1000))]

        seen = _both(postgresql, tmp_path, scenario)
        assert seen[:6] == [2, 0, 1, 1, 2, 5]
        unreadable = seen[6]
        assert isinstance(unreadable, list)
        assert [row.index for row in unreadable] == [4]

    def test_refuses_a_ledger_that_skips_an_index(self, postgresql: Server, tmp_path: Path) -> None:
        """A projection ahead of its ledger says so, on both engines, instead of projecting past a gap."""
        def scenario(location: Path | str, folder: Path) -> list[object]:
            small = new_ledger(folder / "other.sqlite")
            with _opened(location) as projection:
                projection.project([(0, leaf_bytes(FACTS[0]))])
                projection.project([(1, leaf_bytes(FACTS[1]))])
                seen: list[object] = [projection.catch_up(small)]
                with sqlite3.connect(folder / "other.sqlite") as db:
                    db.execute("INSERT INTO leaves VALUES (5, 'x', 'y', X'7B7D', X'00', X'00', "
                               "'2026-11-30T00:00:00+00:00')")
                with pytest.raises(QueryError, match="skips from leaf 2 to 5") as refused:
                    projection.catch_up(small)
                seen += [str(refused.value), projection.next_index]
            small.close()
            return seen

        assert _both(postgresql, tmp_path, scenario)[-1] == 2

    def test_unstorable_text_does_not_stop_the_projection(self, postgresql: Server, tmp_path: Path) -> None:
        """
        A raw NUL, an escaped ``\\u0000`` and an escaped lone surrogate (only tampering writes them) are projected.

        PostgreSQL's text refuses NUL and UTF-8 has no lone surrogates; without
        replacing them, catch-up would fail at that leaf for ever.  Both engines
        store U+FFFD instead, so they still agree, and a filter holding NUL
        fails on neither.
        """
        def scenario(location: Path | str, folder: Path) -> list[object]:
            odd = [(0, b"\x00\xff raw"), (1, b'{"event_type":"audit.dead-lettered","reason":"nul\\u0000here",'
                                             b'"occurred_at":"2026-11-05T09:00:00+00:00"}'),
                   (2, b'{"event_type":"audit.dead-lettered","reason":"half\\ud800pair"}')]
            with _opened(location) as projection:
                return [projection.project(odd), projection.next_index, projection.query(Filters(limit=1000)),
                        projection.query(Filters(agency="nul\x00here")), projection.monthly_statistics("2026-11")]

        seen = _both(postgresql, tmp_path, scenario)
        assert seen[:2] == [3, 3]
        rows = seen[2]
        assert isinstance(rows, list)
        assert sorted(row.reason for row in rows if row.reason) == ["half\ufffdpair", "nul\ufffdhere"]
        assert seen[3] == []


class TestReconnecting:
    def test_a_lost_connection_fails_one_call_and_the_next_reconnects(self, postgresql: Server) -> None:
        """A server-side disconnect (as in a restart) costs the call that meets it; the projection carries on."""
        url = postgresql.new_database()
        projection = AuditProjection.from_url(url)
        try:
            assert projection.project([(0, leaf_bytes(FACTS[0]))]) == 1
            with psycopg.connect(postgresql.url(), autocommit=True) as admin:
                ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                      (url.rsplit("/", 1)[1],)).fetchall()
            assert ended == [(True,)]  # exactly the projection's connection
            with pytest.raises(psycopg.OperationalError):
                _ = projection.next_index
            assert projection.next_index == 1
            assert projection.project([(1, leaf_bytes(FACTS[1]))]) == 1
            assert projection.next_index == 2
        finally:
            projection.close()


class TestQuery:
    @pytest.mark.parametrize(("filters", "expected"), QUERY_CASES)
    def test_each_filter_selects_the_same_rows(self, engines: Engines, filters: Filters, expected: set[str]) -> None:
        """Every filter case of the unit tests returns the same rows, in the same order, with the same facts."""
        assert {row.fact_id for row in engines.same(lambda p: p.query(filters))} == expected

    @pytest.mark.parametrize("filters", [
        Filters(limit=1000), Filters(limit=2), Filters(agreement="marac-referral"),
        Filters(since=t(3, 20), until=t(3, 20, 1)), Filters(until=t(1, 0)), Filters(recipient=SCHOOL_A, limit=1),
    ], ids=["everything", "newest-two", "one-decision", "ties-at-one-instant", "before-november", "limit-one"])
    def test_order_limits_and_windows_agree(self, engines: Engines, filters: Filters) -> None:
        """Newest first with ties broken by leaf index, limits and half-open windows: the same on both engines."""
        assert engines.same(lambda p: p.query(filters))


class TestChronology:
    @pytest.mark.parametrize("person", PEOPLE, ids=[p.first_name for p in PEOPLE])
    def test_each_person_has_the_same_chronology(self, engines: Engines, person: Person) -> None:
        """Decisions, deliveries, acknowledgements and escalations found by notification id, erasure: identical."""
        found = engines.same(lambda p: p.chronology(TOKEN[person]))
        assert found.entries

    def test_views_of_the_record_are_the_same(self, postgresql: Server, tmp_path: Path) -> None:
        """Views recorded through the ledger and re-projected are listed alike, and only for those shown."""
        def scenario(location: Path | str, folder: Path) -> list[object]:
            ledger = new_ledger(folder / "ledger.sqlite")
            append(ledger, FACTS)
            with _opened(location) as projection:
                projection.catch_up(ledger)
                reader = AuditedReader(projection, record_view=LedgerViewSink(ledger, projection, clock=lambda: NOW),
                                       clock=lambda: NOW, channel="test")
                reader.find(OFFICER, RHEA.details, TOKENISER)
                reader.query(Viewer(user_id="auditor-07", role="auditor"), Filters(outcome="withheld"))
                seen: list[object] = [projection.chronology(TOKEN[RHEA]), projection.chronology(TOKEN[ADA])]
            ledger.close()
            return seen

        rhea, ada = _both(postgresql, tmp_path, scenario)
        assert isinstance(rhea, Chronology)
        assert isinstance(ada, Chronology)
        assert [v.viewer for v in rhea.views] == ["ig-officer-01", "auditor-07"]
        assert ada.views == ()


class TestFlows:
    @pytest.mark.parametrize(("since", "until"), [
        (None, None), (t(1, 0), t(1, 0, month=12)), (t(10, 0), None), (None, t(1, 0)),
    ], ids=["all", "november", "since", "until"])
    def test_counts_agree(self, engines: Engines, since: datetime | None, until: datetime | None) -> None:
        """Decisions counted by agency, recipient (NULL when withheld), agreement and outcome: the same counts."""
        assert engines.same(lambda p: p.flows(since, until))


class TestMonthlyStatistics:
    @pytest.mark.parametrize("month", ["2026-10", "2026-11", "2026-12"])
    def test_months_agree(self, engines: Engines, month: str) -> None:
        """October (N5), November (the hand-counted month) and an empty December: identical figures."""
        stats = engines.same(lambda p: p.monthly_statistics(month))
        assert stats.notifications_sent == {"2026-10": 1, "2026-11": 4, "2026-12": 0}[month]

    def test_another_zone_agrees(self, engines: Engines) -> None:
        """Month bounds in UTC rather than London time move no figure differently on either engine."""
        assert engines.same(lambda p: p.monthly_statistics("2026-11", zone="UTC")).month == "2026-11"


def test_the_server_is_postgresql_with_a_non_byte_collation(postgresql: Server) -> None:
    """The comparison means something: PostgreSQL 15 or later, whose text order is not byte order."""
    with psycopg.connect(postgresql.url()) as db:
        version = db.execute("SHOW server_version_num").fetchone()
        ordered = db.execute("SELECT x FROM (VALUES ('ab'), ('B')) v(x) ORDER BY x").fetchall()
    assert version is not None
    assert int(version[0]) >= 150000
    assert [x for (x,) in ordered] == ["ab", "B"]

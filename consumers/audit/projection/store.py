"""
The projection itself: the store that catches up with the ledger and answers the officers' queries.

Opening and reconnecting, idempotent projecting in batches, and the
queries (search, chronology, flows, monthly figures).  The shapes it returns
live in `results`, the column mapping in `rows`, the engines in `dialects`.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from safebus.consumers.audit.ledger import AuditLedger
from safebus.consumers.audit.projection.monthly import (
    ENCOMPASS_RECIPIENT_KINDS,
    _median,
    _on_time,
    _police_on_time,
    month_bounds,
)
from safebus.consumers.audit.projection.results import (
    Chronology,
    Filters,
    Flow,
    MonthlyStatistics,
    QueryError,
    ReasonCount,
    Row,
    SettingOnTime,
)
from safebus.consumers.audit.projection.rows import (
    _ACKNOWLEDGED,
    _DEAD_LETTERED,
    _DEADLINE,
    _DECISION,
    _DELIVERED,
    _FOLLOW_UPS,
    _STATE_CONFLICT,
    _TOKEN,
    _VIEWED,
    _columns,
    _conflict,
    _entry,
    _row,
    _view,
)
from safebus.consumers.audit.projection.schema import _COLUMNS, _SELECT, _schema, _stamp
from safebus.logs import get_logger
from safebus.schemas.decision import Outcome
from safebus.sql_dialects import Cursor as _Cursor
from safebus.sql_dialects import Dialect, PostgreSQLDialect, SQLiteDialect
from safebus.sql_dialects import RewritingCursor as _Rewriting

__all__ = ["AuditProjection"]

_log = get_logger("audit.projection")

_BATCH = 1000
"""Leaves projected per transaction: one fsync per batch, and at most one batch re-projected after a crash."""

_IN_CHUNK = 500
"""Values per ``IN (…)`` list: under SQLite's default limit of host parameters, with room for the rest."""


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


# --------------------------------------------------------------------------- the projection

class AuditProjection:
    """
    The audit log projected into indexed tables; SQLite by default.

    Safe to share between threads (one connection behind a lock): the
    sequencer's callback projects while a dashboard reads.
    """

    def __init__(self, path: Path | None = None, *, dialect: Dialect | None = None) -> None:
        """
        Open (or create) the projection in SQLite file `path`, or in `dialect`'s database when given.

        Raises QueryError if neither is given.
        """
        if dialect is None and path is None:
            raise QueryError("the audit projection needs a file or a dialect")
        self.dialect: Dialect = dialect or SQLiteDialect(cast(Path, path), durable=False)  # rebuilt from the ledger
        self._db = self.dialect.connect()
        self._lock = threading.RLock()
        with self._transaction() as cursor:
            for statement in _schema(self.dialect.integer):
                cursor.execute(statement, ())

    @classmethod
    def from_url(cls, url: str) -> AuditProjection:
        """
        The projection a configuration URL names: ``sqlite:///path/to/file.db`` or ``postgresql://…``.

        Raises QueryError for any other scheme.
        """
        if url.startswith("sqlite:///"):
            return cls(Path(url.removeprefix("sqlite://")))
        if url.startswith(("postgresql://", "postgres://")):
            return cls(dialect=PostgreSQLDialect(url))
        raise QueryError("the audit projection URL must start with sqlite:/// or postgresql://")

    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        with self._lock:
            if self.dialect.lost(self._db):
                # Nothing is lost with it: every write is in a transaction, and projecting again changes nothing.
                _log.warning("audit_projection.reconnecting", engine=self.dialect.name)
                self._db = self.dialect.connect()
            cursor = self._db.cursor()
            try:
                yield cast(_Cursor, _Rewriting(cursor, self.dialect))
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ projecting

    @property
    def next_index(self) -> int:
        """The first leaf index not yet projected (every lower one is)."""
        with self._transaction() as cursor:
            cursor.execute("SELECT value FROM audit_projection_state WHERE name = ?", ("next_index",))
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def catch_up(self, ledger: AuditLedger) -> int:
        """
        Project every leaf of `ledger` not yet projected; return how many were new.

        Resumes from `next_index`, in batches, each in one transaction with the
        new `next_index`.  Raises QueryError if the ledger skips an index
        (its leaves are numbered without gaps, so that would be a different log).
        """
        start = self.next_index
        projected = 0
        batch: list[tuple[int, bytes]] = []
        expected = start
        for leaf in ledger.leaves(start):
            if leaf.index != expected:
                raise QueryError(f"the ledger skips from leaf {expected} to {leaf.index}")
            expected += 1
            batch.append((leaf.index, leaf.body))
            if len(batch) >= _BATCH:
                projected += self.project(batch)
                batch = []
        if batch:
            projected += self.project(batch)
        if projected:
            _log.info("audit_projection.caught_up", first_index=start, projected=projected, next_index=expected)
        return projected

    def project(self, leaves: Iterable[tuple[int, bytes | str]]) -> int:
        """
        Project leaves given as (index, canonical JSON); return how many were not projected before.

        The seam `catch_up` uses, and what tests call without a ledger.  A
        leaf already projected is left exactly as it is.
        """
        rows = {index: _columns(index, body) for index, body in leaves}
        if not rows:
            return 0
        with self._transaction() as cursor:
            indexes = sorted(rows)
            cursor.execute("SELECT leaf_index FROM audit_facts WHERE leaf_index >= ? AND leaf_index <= ?",
                           (indexes[0], indexes[-1]))
            known = {int(r[0]) for r in cursor.fetchall()}
            fresh = [rows[i] for i in indexes if i not in known]
            if fresh:
                marks = ", ".join("?" * len(_COLUMNS))
                cursor.executemany(f"INSERT INTO audit_facts ({', '.join(_COLUMNS)}) VALUES ({marks}) "  # noqa: S608
                                   "ON CONFLICT (leaf_index) DO NOTHING", [columns for columns, _ in fresh])
                cursor.executemany("INSERT INTO audit_fact_subjects (subject, leaf_index) VALUES (?, ?) "
                                   "ON CONFLICT (subject, leaf_index) DO NOTHING",
                                   [(token, columns[0]) for columns, tokens in fresh for token in tokens])
            cursor.execute("SELECT value FROM audit_projection_state WHERE name = ?", ("next_index",))
            current = cursor.fetchone()
            following = _first_gap(cursor, int(current[0]) if current else 0)
            cursor.execute("INSERT INTO audit_projection_state (name, value) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", ("next_index", following))
        return len(fresh)

    # ------------------------------------------------------------------ reading

    def _select(self, where: list[str], parameters: list[Any], *, order: str = "f.happened_at, f.leaf_index",
                limit: int | None = None) -> list[Row]:
        statement = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}"
        if limit is not None:
            statement += " LIMIT ?"
            parameters = [*parameters, limit]
        with self._transaction() as cursor:
            cursor.execute(statement, parameters)
            found = cursor.fetchall()
        return [_row(values) for values in found]

    def query(self, filters: Filters) -> list[Row]:
        """The facts every filter in `filters` matches, newest first, at most `filters.limit` of them."""
        where: list[str] = []
        parameters: list[Any] = []
        if filters.subject:
            where.append("f.leaf_index IN (SELECT s.leaf_index FROM audit_fact_subjects s WHERE s.subject = ?)")
            parameters.append(filters.subject)
        for column, value in (("agency", filters.agency), ("recipient", filters.recipient),
                              ("agreement_id", filters.agreement), ("outcome", filters.outcome),
                              ("fact_type", filters.fact_type)):
            if value:
                where.append(f"f.{column} = ?")
                parameters.append(value)
        if filters.since is not None:
            where.append("f.happened_at >= ?")
            parameters.append(_stamp(filters.since))
        if filters.until is not None:
            where.append("f.happened_at < ?")
            parameters.append(_stamp(filters.until))
        return self._select(where, parameters, order="f.happened_at DESC, f.leaf_index DESC", limit=filters.limit)

    def _by_output(self, output_ids: Sequence[str], fact_types: Sequence[str]) -> list[Row]:
        found: list[Row] = []
        type_marks = ", ".join("?" * len(fact_types))
        for chunk in _chunks(output_ids):
            marks = ", ".join("?" * len(chunk))
            found.extend(self._select([f"f.output_id IN ({marks})", f"f.fact_type IN ({type_marks})"],
                                      [*chunk, *fact_types]))
        return found

    def chronology(self, subject: str) -> Chronology:
        """
        Everything about `subject` (a token): decisions, deliveries, acknowledgements, escalations, erasure, views.

        Facts that name the subject are found by token; deliveries,
        acknowledgements and escalations that name only a notification are
        found through the output id of the subject's decisions.  Raises
        QueryError if `subject` is not a subject token.
        """
        if not _TOKEN.match(subject):
            raise QueryError("not a subject token")
        named = self._select(["f.leaf_index IN (SELECT s.leaf_index FROM audit_fact_subjects s WHERE s.subject = ?)"],
                             [subject])
        outputs = sorted({r.output_id for r in named if r.fact_type == _DECISION and r.output_id})
        seen = {r.index for r in named}
        linked = [r for r in self._by_output(outputs, _FOLLOW_UPS) if r.index not in seen]
        rows = sorted([*named, *linked], key=lambda r: (r.at, r.index))
        return Chronology(subject=subject,
                          entries=tuple(_entry(r) for r in rows if r.fact_type != _VIEWED),
                          views=tuple(_view(r) for r in rows if r.fact_type == _VIEWED))

    def flows(self, since: datetime | None = None, until: datetime | None = None) -> list[Flow]:
        """Sharing decisions counted by producing agency, recipient, agreement and outcome, most frequent first."""
        where, parameters = ["f.fact_type = ?"], [_DECISION]
        if since is not None:
            where.append("f.happened_at >= ?")
            parameters.append(_stamp(since))
        if until is not None:
            where.append("f.happened_at < ?")
            parameters.append(_stamp(until))
        statement = ("SELECT f.agency, f.recipient, f.recipient_kind, f.agreement_id, f.outcome, COUNT(*) "
                     "FROM audit_facts f WHERE " + " AND ".join(where) +
                     " GROUP BY f.agency, f.recipient, f.recipient_kind, f.agreement_id, f.outcome")
        with self._transaction() as cursor:
            cursor.execute(statement, parameters)
            found = cursor.fetchall()
        flows = [Flow(agency=a or "unknown", recipient=r, recipient_kind=k, agreement_id=g or "unknown",
                      outcome=o or "unknown", count=int(n)) for a, r, k, g, o, n in found]
        return sorted(flows, key=lambda f: (-f.count, f.agency, f.recipient or "", f.recipient_kind or "",
                                            f.agreement_id, f.outcome))

    def monthly_statistics(self, month: str, *, zone: str = "Europe/London") -> MonthlyStatistics:
        """
        The month's Encompass notifications (sent, delivered, on time, acknowledged), withheld shares, dead letters.

        `month` is ``YYYY-MM`` in `zone` (see `month_bounds`; raises QueryError
        if malformed).
        """
        start, end = month_bounds(month, zone)
        window = ["f.happened_at >= ?", "f.happened_at < ?"]
        bounds = [_stamp(start), _stamp(end)]
        decisions = self._select(["f.fact_type = ?", *window], [_DECISION, *bounds])
        sent: dict[str, Row] = {}
        withheld: dict[tuple[str, str, str], int] = {}
        for row in decisions:
            if row.outcome == Outcome.SHARED and row.recipient_kind in ENCOMPASS_RECIPIENT_KINDS and row.output_id:
                sent.setdefault(row.output_id, row)
            elif row.outcome == Outcome.WITHHELD:
                key = (row.agreement_id or "unknown", row.clause or "unknown", row.reason or "unknown")
                withheld[key] = withheld.get(key, 0) + 1
        delivered_at: dict[str, datetime] = {}
        acknowledged_at: dict[str, datetime] = {}
        due_from_ack: dict[str, datetime] = {}
        due_from_escalation: dict[str, datetime] = {}
        due_from_monitor: dict[str, datetime] = {}
        police_late: dict[str, int | None] = {}
        for row in sorted(self._by_output(sorted(sent), _FOLLOW_UPS), key=lambda r: (r.at, r.index)):
            output = row.output_id or ""
            if row.fact_type == _DELIVERED:
                delivered_at.setdefault(output, row.at)
            elif row.fact_type == _ACKNOWLEDGED:
                acknowledged_at.setdefault(output, row.at)
                if row.due_by is not None:
                    due_from_ack.setdefault(output, row.due_by)
            elif row.fact_type == _DEADLINE and row.due_by is not None:
                due_from_monitor.setdefault(output, row.due_by)
                late = row.fact.get("shared_late_minutes")
                police_late.setdefault(output, late if isinstance(late, int) and not isinstance(late, bool) else None)
            elif row.due_by is not None:
                due_from_escalation.setdefault(output, row.due_by)
        # The monitor's own record of the deadline wins; else the first acknowledgement's, else an escalation's.
        due_by = {**due_from_escalation, **due_from_ack, **due_from_monitor}
        waits = [acknowledged_at[o] - delivered_at.get(o, sent[o].at) for o in sent if o in acknowledged_at]
        dead: dict[str, int] = {}
        for row in self._select(["f.fact_type = ?", *window], [_DEAD_LETTERED, *bounds]):
            dead[row.reason or "unknown"] = dead.get(row.reason or "unknown", 0) + 1
        per_setting: dict[str, dict[str, Row]] = {}
        for output, row in sent.items():
            per_setting.setdefault(row.recipient or "unknown", {})[output] = row
        by_setting = tuple(sorted((SettingOnTime(
            recipient=recipient, sent=len(outputs), delivered=sum(1 for o in outputs if o in delivered_at),
            acknowledged=sum(1 for o in outputs if o in acknowledged_at),
            acknowledged_on_time=_on_time(outputs, acknowledged_at, due_by),
            police_shared_on_time=_police_on_time(outputs, police_late),
        ) for recipient, outputs in per_setting.items()), key=lambda s: (-s.sent, s.recipient)))
        lateness = [float(m) for m in (police_late.get(o) for o in sent) if m is not None and m > 0]
        conflicts = tuple(_conflict(r) for r in self._select(["f.fact_type = ?", *window],
                                                               [_STATE_CONFLICT, *bounds]))
        return MonthlyStatistics(
            month=month, zone=zone, notifications_sent=len(sent), by_setting=by_setting,
            delivered=sum(1 for o in sent if o in delivered_at),
            delivered_on_time=_on_time(sent, delivered_at, due_by),
            acknowledged=sum(1 for o in sent if o in acknowledged_at),
            acknowledged_on_time=_on_time(sent, acknowledged_at, due_by),
            median_time_to_acknowledge=_median(waits),
            police_shared_on_time=_police_on_time(sent, police_late),
            median_minutes_shared_late=statistics.median(lateness) if lateness else None,
            state_conflicts=conflicts,
            withheld_by_reason=tuple(sorted((ReasonCount(reason=r, count=n, agreement_id=a, clause=c)
                                             for (a, c, r), n in withheld.items()),
                                            key=lambda x: (-x.count, x.label, x.reason))),
            dead_letters_by_reason=tuple(sorted((ReasonCount(reason=r, count=n) for r, n in dead.items()),
                                                key=lambda x: (-x.count, x.reason))),
        )


def _first_gap(cursor: _Cursor, start: int) -> int:
    """The lowest leaf index from `start` on that is not projected (reads a batch at a time)."""
    following = start
    while True:
        cursor.execute("SELECT leaf_index FROM audit_facts WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?",
                       (following, _BATCH))
        found = [int(r[0]) for r in cursor.fetchall()]
        for index in found:
            if index != following:
                return following
            following += 1
        if len(found) < _BATCH:
            return following

"""
A queryable projection of the audit log: who received what about whom, when and why.

The ledger (`safebus.consumers.audit.ledger`) is built to be *proved*, not
searched: leaves in order, hashes, receipts.  Information-governance officers
need the opposite: every decision about one person, the flows between two
agencies last quarter, the month's Operation Encompass figures.  This module
keeps a second store, derived from the ledger and disposable, indexed by
subject token, agency, recipient, agreement, outcome, fact type and time.

Why it is built this way:

- **Derived, never authoritative.**  Every row carries its leaf index and
  fact id, so anything shown can be proved against the log (an inclusion
  proof) and the whole projection can be deleted and rebuilt.  The
  projection never writes to the ledger.
- **Idempotent catch-up that resumes.**  The next leaf index to project is
  stored in the projection itself, in the same transaction as the rows, so a
  crash re-projects at most one batch, and projecting a leaf again changes
  nothing (rows are keyed by leaf index and inserted only when absent).
- **Tolerant of what it does not know.**  Leaves are read as JSON, not
  validated against today's contracts: a new kind of fact, or an old version
  of one, still gets its common columns and stays searchable.  A leaf that is
  not JSON at all (only tampering produces one) is kept as ``unreadable``
  under its index so the count of leaves still matches; the integrity check,
  not the projection, says what happened to it.
- **Portable SQL, the dialect isolated.**  SQLite is the default (one file,
  nothing to run).  PostgreSQL is selected by configuration
  (`AuditProjection.from_url("postgresql://…")`).  Everything that differs
  between the two lives behind `Dialect`: how to connect, the driver's
  parameter style, the 64-bit integer type and how to tell a lost
  connection.  Upserts use ``INSERT … ON CONFLICT … DO NOTHING/UPDATE``,
  which both engines accept.  NULL ordering differs between the engines, so
  results that could hold NULLs are sorted in Python.  Times are stored as
  fixed-width UTC text (``2026-11-18T21:30:00.000000Z``), so text order is
  time order in both, whatever the server's collation.  PostgreSQL's text
  cannot hold NUL and no UTF-8 text holds a lone surrogate, so every text
  value is stored (and searched for) with those replaced by U+FFFD in both
  engines alike: a tampered leaf is projected, as ``unreadable`` or with a
  replacement character, instead of stopping the projection at its index.
  A PostgreSQL connection can be lost (a restart, a failover): the call that
  meets it fails and the next one reconnects.  **Both dialects are tested**:
  SQLite by the unit tests, PostgreSQL 15 in CI by
  ``tests/integration/test_audit_projection_postgresql.py``, which projects
  the same log into a throwaway server and requires every answer to equal
  SQLite's.
- **No personal data.**  Facts name people only by pseudonymous tokens; this
  module never sees a name, and logs only leaf indexes and counts.

Auditing the reading itself (every query is an `AuditViewed` fact) is the job
of `safebus.consumers.audit.reports.AuditedReader`, which wraps this class:
callers outside tests should use that, not this, to read.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
import statistics
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from safebus.consumers.audit.ledger import AuditLedger
from safebus.errors import SafebusError
from safebus.logs import get_logger
from safebus.schemas.audit import (
    Acknowledged,
    AuditViewed,
    DeadLettered,
    DeadlineSet,
    Delivered,
    Escalated,
    StateConflict,
)
from safebus.schemas.decision import Outcome, SharingDecision, SubjectErased

__all__ = [
    "ENCOMPASS_RECIPIENT_KINDS", "MAX_LIMIT", "UNREADABLE", "AuditProjection", "Chronology", "ChronologyEntry",
    "ConflictEntry", "Dialect", "Filters", "Flow", "MonthlyStatistics", "OnTime", "PostgreSQLDialect", "QueryError",
    "ReasonCount", "Row", "SQLiteDialect", "ViewEntry", "month_bounds",
]

_log = get_logger("audit.projection")

ENCOMPASS_RECIPIENT_KINDS = frozenset({"school"})
"""
Recipient kinds whose shares are Operation Encompass notifications to an education setting.

The engine (`processors/engine.py`) builds an `EncompassNotification` exactly
when a rule's ``recipient_kind`` is ``school`` (agreement
``operation-encompass``, clause 4.1).  The early-years opt-in (clause 3.2) goes
to ``health`` and the home-education officer (4.2) to ``childrens-services``:
those are not notifications to a setting, so they are not counted.
"""

MAX_LIMIT = 1000
"""Most rows one query returns: a page an officer can read, and a bound on memory and on the view's size."""

_BATCH = 1000
"""Leaves projected per transaction: one fsync per batch, and at most one batch re-projected after a crash."""

_IN_CHUNK = 500
"""Values per ``IN (…)`` list: under SQLite's default limit of host parameters, with room for the rest."""

_DECISION = SharingDecision.type_name()
_DELIVERED = Delivered.type_name()
_ACKNOWLEDGED = Acknowledged.type_name()
_ESCALATED = Escalated.type_name()
_ERASED = SubjectErased.type_name()
_VIEWED = AuditViewed.type_name()
_DEAD_LETTERED = DeadLettered.type_name()
_DEADLINE = DeadlineSet.type_name()
_STATE_CONFLICT = StateConflict.type_name()
_FOLLOW_UPS = (_DELIVERED, _ACKNOWLEDGED, _ESCALATED, _DEADLINE)
"""Facts about an output (a notification or referral), linked to its decision by output id."""

UNREADABLE = "unreadable"
"""The fact type given to a leaf whose bytes are not a JSON object."""

_NEVER = datetime(1, 1, 1, tzinfo=UTC)
_TOKEN = re.compile(r"^subj_[0-9a-f]{32}$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters some engine or UTF-8 cannot store: NUL (PostgreSQL's text) and lone surrogates (any UTF-8)."""


class QueryError(SafebusError, ValueError):
    """A query's parameters are not valid (unknown outcome, a limit out of range, naive times, a bad month)."""


# --------------------------------------------------------------------------- the dialect seam

class _Cursor(Protocol):
    """The part of a DB-API 2.0 cursor used here."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> object:
        """Run one statement."""

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""

    def fetchone(self) -> Any:
        """The next row, or None."""


class _Connection(Protocol):
    """The part of a DB-API 2.0 connection used here."""

    def cursor(self) -> Any:
        """A new cursor."""

    def commit(self) -> None:
        """Commit the open transaction."""

    def rollback(self) -> None:
        """Roll the open transaction back."""

    def close(self) -> None:
        """Close the connection."""


class Dialect(Protocol):
    """
    Everything that differs between the SQL engines the projection runs on.

    Statements are written once with ``?`` placeholders and portable SQL;
    `sql` rewrites them for the driver.  A new engine needs one class, and a
    run of ``tests/integration/test_audit_projection_postgresql.py``'s
    comparison against SQLite.
    """

    @property
    def name(self) -> str:
        """The engine's name (``sqlite``, ``postgresql``)."""

    @property
    def integer(self) -> str:
        """The column type of a 64-bit integer."""

    def connect(self) -> _Connection:
        """A new connection in a mode where `commit` ends each transaction."""

    def sql(self, statement: str) -> str:
        """`statement` with its ``?`` placeholders in the driver's parameter style."""

    def lost(self, connection: _Connection) -> bool:
        """Whether `connection` can no longer be used (its server restarted, the network dropped): reconnect."""


@dataclass(frozen=True)
class SQLiteDialect:
    """SQLite through the standard library: the default, one file next to the ledger."""

    path: Path
    name: str = "sqlite"
    integer: str = "INTEGER"

    def connect(self) -> _Connection:
        """Open the file (WAL: readers never block the projector), creating its folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return cast(_Connection, connection)

    def sql(self, statement: str) -> str:
        """SQLite takes ``?`` (qmark) as it is."""
        return statement

    def lost(self, connection: _Connection) -> bool:
        """A file is never lost the way a server connection is."""
        return False


@dataclass(frozen=True)
class PostgreSQLDialect:
    """
    PostgreSQL through psycopg 3 (``pip install 'psycopg[binary]'``), tested against PostgreSQL 15 in CI.

    Selected by configuration (`AuditProjection.from_url`) where several
    dashboards share one projection.  Its answers are tested to equal the
    SQLite dialect's, on a server whose collation is not byte order.
    `connect` raises QueryError, saying what to install, if psycopg is
    missing (it is an optional dependency: SQLite needs nothing).
    """

    dsn: str
    name: str = "postgresql"
    integer: str = "BIGINT"

    def connect(self) -> _Connection:
        """Open a connection (psycopg's default: a transaction per `commit`)."""
        try:
            psycopg = importlib.import_module("psycopg")
        except ImportError as exc:
            raise QueryError("the PostgreSQL projection needs psycopg: pip install 'psycopg[binary]'") from exc
        return cast(_Connection, psycopg.connect(self.dsn))

    def sql(self, statement: str) -> str:
        """psycopg takes ``%s`` (format); our statements hold no literal ``%`` or ``?``."""
        assert "%" not in statement
        return statement.replace("?", "%s")

    def lost(self, connection: _Connection) -> bool:
        """psycopg marks a connection closed once it has seen it break (``closed`` is psycopg's attribute)."""
        return bool(getattr(connection, "closed", False))


def _schema(integer: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS audit_projection_state ("
        f" name TEXT PRIMARY KEY, value {integer} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS audit_facts ("
        f" leaf_index {integer} PRIMARY KEY,"
        " fact_id TEXT NOT NULL, fact_type TEXT NOT NULL, producer TEXT, agency TEXT, happened_at TEXT NOT NULL,"
        " recipient TEXT, recipient_kind TEXT, agreement_id TEXT, agreement_version TEXT, clause TEXT,"
        " outcome TEXT, reason TEXT, output_id TEXT, due_by TEXT, body TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS audit_fact_subjects ("
        f" subject TEXT NOT NULL, leaf_index {integer} NOT NULL, PRIMARY KEY (subject, leaf_index))",
        "CREATE INDEX IF NOT EXISTS audit_facts_time ON audit_facts (happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_type ON audit_facts (fact_type, happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_agency ON audit_facts (agency, happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_recipient ON audit_facts (recipient, happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_agreement ON audit_facts (agreement_id, happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_outcome ON audit_facts (outcome, happened_at)",
        "CREATE INDEX IF NOT EXISTS audit_facts_output ON audit_facts (output_id)",
        "CREATE INDEX IF NOT EXISTS audit_facts_fact_id ON audit_facts (fact_id)",
    ]


_COLUMNS = ("leaf_index", "fact_id", "fact_type", "producer", "agency", "happened_at", "recipient", "recipient_kind",
            "agreement_id", "agreement_version", "clause", "outcome", "reason", "output_id", "due_by", "body")
_SELECT = "SELECT " + ", ".join(f"f.{c}" for c in _COLUMNS) + " FROM audit_facts f"  # noqa: S608 - constants only


# --------------------------------------------------------------------------- what queries return

@dataclass(frozen=True, kw_only=True)
class Row:
    """
    One projected fact: the indexed columns, its subjects, and the fact itself.

    `agency` is the agency a fact is *about* the work of: for a sharing
    decision the agency whose event was decided on (``about_producer``; every
    decision's `producer` is the router), otherwise the fact's producer.
    """

    index: int
    fact_id: str
    fact_type: str
    producer: str | None
    agency: str | None
    at: datetime
    recipient: str | None
    recipient_kind: str | None
    agreement_id: str | None
    agreement_version: str | None
    clause: str | None
    outcome: str | None
    reason: str | None
    output_id: str | None
    due_by: datetime | None
    subjects: tuple[str, ...]
    fact: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Filters:
    """
    What `AuditProjection.query` selects: every given filter must hold.

    `since` is inclusive and `until` exclusive, both timezone-aware.  Raises
    QueryError for an unknown outcome, naive times or a limit outside 1 to
    `MAX_LIMIT`.
    """

    subject: str | None = None
    agency: str | None = None
    recipient: str | None = None
    agreement: str | None = None
    outcome: str | None = None
    fact_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        """Refuse what cannot be meant (rather than silently returning nothing)."""
        if self.outcome is not None and self.outcome not in {o.value for o in Outcome}:
            raise QueryError(f"unknown outcome {self.outcome!r}: one of {', '.join(o.value for o in Outcome)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise QueryError("since and until need a time zone")

    def parameters(self) -> dict[str, str]:
        """The filters given, as text, for the `AuditViewed` fact (tokens and agency ids: never names)."""
        found: dict[str, str] = {}
        for name in ("subject", "agency", "recipient", "agreement", "outcome", "fact_type"):
            value = getattr(self, name)
            if value:
                found[name] = str(value)
        if self.since is not None:
            found["since"] = _stamp(self.since)
        if self.until is not None:
            found["until"] = _stamp(self.until)
        found["limit"] = str(self.limit)
        return found


@dataclass(frozen=True, kw_only=True)
class ChronologyEntry:
    """
    One thing that happened about a person, flattened for pages and exports.

    `kind` is ``decision``, ``delivered``, ``acknowledged``, ``escalated``,
    ``erased``, or another fact type verbatim.  `by` is who recorded it (the
    router for a decision, the school for an acknowledgement), `from_agency`
    whose information it was, `to` who received it (None when nothing was
    sent).
    """

    index: int
    fact_id: str
    kind: str
    at: datetime
    outcome: str | None = None
    by: str | None = None
    from_agency: str | None = None
    to: str | None = None
    recipient_kind: str | None = None
    purpose: str | None = None
    reason: str | None = None
    agreement: str | None = None
    clause: str | None = None
    lawful_basis: tuple[str, ...] = ()
    consent: str | None = None
    fields_released: tuple[str, ...] = ()
    output_id: str | None = None
    detail: str | None = None
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ViewEntry:
    """Someone looked at audit data about the person: who, in which role, what, when, and how many records."""

    index: int
    at: datetime
    viewer: str
    viewer_role: str
    view: str
    parameters: Mapping[str, str]
    results: int


@dataclass(frozen=True, kw_only=True)
class Chronology:
    """Everything the log holds about one subject, oldest first, and everyone who looked at it."""

    subject: str
    entries: tuple[ChronologyEntry, ...]
    views: tuple[ViewEntry, ...]

    @property
    def decisions(self) -> tuple[ChronologyEntry, ...]:
        """The sharing decisions only (shared, withheld, deferred, escalated)."""
        return tuple(e for e in self.entries if e.kind == "decision")

    def __len__(self) -> int:
        """How many records the chronology shows (entries and views)."""
        return len(self.entries) + len(self.views)


@dataclass(frozen=True, kw_only=True)
class Flow:
    """How many decisions of one outcome an agency's events led to, towards one recipient, under one agreement."""

    agency: str
    recipient: str | None
    recipient_kind: str | None
    agreement_id: str
    outcome: str
    count: int


@dataclass(frozen=True, kw_only=True)
class OnTime:
    """
    How many were done by their deadline, how many not, and for how many the deadline is not known.

    A deadline is known only from the facts that carry it (an acknowledgement's
    or an escalation's ``due_by``).  Not done at all, with a known deadline,
    counts as late: it was not done before the deadline.
    """

    on_time: int
    late: int
    unknown: int

    @property
    def known(self) -> int:
        """How many had a known deadline."""
        return self.on_time + self.late

    @property
    def rate(self) -> float | None:
        """On-time share of those with a known deadline; None ("unknown") if none had one."""
        return self.on_time / self.known if self.known else None


@dataclass(frozen=True, kw_only=True)
class ReasonCount:
    """A count under one reason (for withheld shares, with the agreement and clause that decided them)."""

    reason: str
    count: int
    agreement_id: str | None = None
    clause: str | None = None

    @property
    def label(self) -> str:
        """A short name for the reason: the agreement and clause where there is one, else the reason code."""
        return f"{self.agreement_id} {self.clause}" if self.agreement_id and self.clause else self.reason


@dataclass(frozen=True, kw_only=True)
class SettingOnTime:
    """One education setting's Operation Encompass figures for the month."""

    recipient: str
    sent: int
    delivered: int
    acknowledged: int
    acknowledged_on_time: OnTime
    police_shared_on_time: OnTime = OnTime(on_time=0, late=0, unknown=0)
    """The police's side for the same notifications (see `MonthlyStatistics.police_shared_on_time`)."""


@dataclass(frozen=True, kw_only=True)
class ConflictEntry:
    """
    An `audit.state-conflict`: changes to the router's state at one instant that disagreed, and what stood.

    Tokens, URNs and statuses only (as the fact holds them): `values` are what
    the changes said, `resolved_to` what the router let stand (the safer
    consent, or ``unresolved`` for an enrolment, whose alerts go to the MASH
    education desk).
    """

    index: int
    kind: str
    purpose: str | None
    ordering_point: datetime
    recorded_at: datetime | None
    subjects: tuple[str, ...]
    values: tuple[str, ...]
    resolved_to: str
    changes: int


@dataclass(frozen=True, kw_only=True)
class MonthlyStatistics:
    """
    One calendar month's Operation Encompass figures, withheld shares and dead letters.

    Notifications are the shares to education settings decided in the month
    (`ENCOMPASS_RECIPIENT_KINDS`); their deliveries, acknowledgements and
    escalations count whenever they happened.  Time to acknowledge runs from
    delivery to the inbox (from the decision when no delivery is logged).
    """

    month: str
    zone: str
    notifications_sent: int
    delivered: int
    delivered_on_time: OnTime
    acknowledged: int
    acknowledged_on_time: OnTime
    median_time_to_acknowledge: timedelta | None
    withheld_by_reason: tuple[ReasonCount, ...]
    dead_letters_by_reason: tuple[ReasonCount, ...]
    by_setting: tuple[SettingOnTime, ...] = ()
    """The same, per education setting (the recipient agency), most notifications first."""
    police_shared_on_time: OnTime = OnTime(on_time=0, late=0, unknown=0)
    """
    The police's clock for the same notifications: shared before the setting's next school day after the
    incident (on time) or after it (late), from the monitor's deadline facts (``shared_late_minutes``, 1.1.0 on);
    unknown without a deadline fact or an incident time.
    """
    median_minutes_shared_late: float | None = None
    """Of the notifications the police shared late, the median lateness in minutes."""
    state_conflicts: tuple[ConflictEntry, ...] = ()
    """The state conflicts whose ordering point is in the month, oldest first."""

    @property
    def withheld(self) -> int:
        """Every share withheld in the month."""
        return sum(r.count for r in self.withheld_by_reason)

    @property
    def dead_letters(self) -> int:
        """Every input dead-lettered in the month."""
        return sum(r.count for r in self.dead_letters_by_reason)


# --------------------------------------------------------------------------- helpers

def _stamp(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order in any engine."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _unstamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _text(fact: Mapping[str, Any], key: str) -> str | None:
    value = fact.get(key)
    return value if isinstance(value, str) and value else None


def _texts(fact: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = fact.get(key)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _subjects_of(fact: Mapping[str, Any]) -> tuple[str, ...]:
    tokens = list(_texts(fact, "subjects"))
    erased = _text(fact, "subject")
    if erased is not None:
        tokens.append(erased)
    return tuple(dict.fromkeys(t for t in tokens if _TOKEN.match(t)))


def _parse(body: bytes | str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _columns(index: int, body: bytes | str) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The row for leaf `index` and the subjects it names."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    fact = _parse(body)
    if fact is None:
        return (index, f"leaf-{index}", UNREADABLE, None, None, _stamp(_NEVER), None, None, None, None, None, None,
                None, None, None, text), ()
    kind = _text(fact, "event_type") or UNREADABLE
    at = _when(fact.get("occurred_at")) or _NEVER
    agency = _text(fact, "producer")
    recipient = _text(fact, "recipient")
    output_id = _text(fact, "output_id")
    reason = _text(fact, "reason")
    if kind == _DECISION:
        agency = _text(fact, "about_producer") or agency
    elif kind == _DELIVERED:
        at = _when(fact.get("delivered_at")) or at
    elif kind == _ACKNOWLEDGED:
        at = _when(fact.get("acknowledged_at")) or at
        output_id = _text(fact, "notification_id")
    elif kind in (_ESCALATED, _DEADLINE):
        output_id = _text(fact, "notification_id")
    due_by = _when(fact.get("due_by"))
    row = (index, _text(fact, "event_id") or f"leaf-{index}", kind, _text(fact, "producer"), agency, _stamp(at),
           recipient, _text(fact, "recipient_kind"), _text(fact, "agreement_id"), _text(fact, "agreement_version"),
           _text(fact, "clause"), _text(fact, "outcome") if kind == _DECISION else None, reason, output_id,
           _stamp(due_by) if due_by else None, text)
    return row, _subjects_of(fact)


def _row(values: Sequence[Any]) -> Row:
    (index, fact_id, fact_type, producer, agency, happened_at, recipient, recipient_kind, agreement_id,
     agreement_version, clause, outcome, reason, output_id, due_by, body) = values
    fact = _parse(body) or {}
    at = _unstamp(happened_at)
    return Row(index=int(index), fact_id=fact_id, fact_type=fact_type, producer=producer, agency=agency,
               at=at or _NEVER, recipient=recipient, recipient_kind=recipient_kind, agreement_id=agreement_id,
               agreement_version=agreement_version, clause=clause, outcome=outcome, reason=reason,
               output_id=output_id, due_by=_unstamp(due_by), subjects=_subjects_of(fact), fact=fact)


def _entry(row: Row) -> ChronologyEntry:
    """A row as a chronology entry: what an officer (or a review panel) reads."""
    fact = row.fact
    common: dict[str, Any] = {"index": row.index, "fact_id": row.fact_id, "at": row.at, "by": row.producer,
                              "subjects": row.subjects}
    if row.fact_type == _DECISION:
        agreement = f"{row.agreement_id} {row.agreement_version}" if row.agreement_id else None
        return ChronologyEntry(kind="decision", outcome=row.outcome, from_agency=row.agency, to=row.recipient,
                               recipient_kind=row.recipient_kind, purpose=_text(fact, "purpose"), reason=row.reason,
                               agreement=agreement, clause=row.clause, lawful_basis=_texts(fact, "lawful_basis"),
                               consent=_text(fact, "consent_status"), fields_released=_texts(fact, "fields_released"),
                               output_id=row.output_id, **common)
    if row.fact_type == _DELIVERED:
        return ChronologyEntry(kind="delivered", to=row.recipient, output_id=row.output_id,
                               detail=f"channel {_text(fact, 'channel')}", **common)
    if row.fact_type == _ACKNOWLEDGED:
        due = f", due by {_stamp(row.due_by)}" if row.due_by else ""
        return ChronologyEntry(kind="acknowledged", output_id=row.output_id,
                               detail=f"setting {_text(fact, 'setting_urn')}, staff {_text(fact, 'staff_id')} "
                                      f"({_text(fact, 'role')}){due}", **common)
    if row.fact_type == _ESCALATED:
        notified = ", ".join(_texts(fact, "notified")) or "nobody named"
        due = _stamp(row.due_by) if row.due_by else "unknown"
        return ChronologyEntry(kind="escalated", output_id=row.output_id,
                               detail=f"step {_text(fact, 'step')}, due by {due}, notified {notified}", **common)
    if row.fact_type == _DEADLINE:
        due = _stamp(row.due_by) if row.due_by else "unknown"
        return ChronologyEntry(kind="deadline", output_id=row.output_id,
                               detail=f"due by {due} ({_text(fact, 'desk')}, calendar "
                                      f"{(_text(fact, 'calendar_version') or '')[:19]})", **common)
    if row.fact_type == _ERASED:
        keys = len(_texts(fact, "key_ids_destroyed"))
        return ChronologyEntry(kind="erased", reason=row.reason,
                               detail=f"{keys} key(s) destroyed, requested by {_text(fact, 'requested_by')}",
                               **common)
    return ChronologyEntry(kind=row.fact_type, reason=row.reason, to=row.recipient, output_id=row.output_id, **common)


def _view(row: Row) -> ViewEntry:
    fact = row.fact
    raw = fact.get("parameters")
    parameters = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    results = fact.get("results")
    return ViewEntry(index=row.index, at=row.at, viewer=_text(fact, "viewer") or "unknown",
                     viewer_role=_text(fact, "viewer_role") or "unknown", view=_text(fact, "view") or "unknown",
                     parameters=parameters, results=results if isinstance(results, int) else 0)


def month_bounds(month: str, zone: str = "Europe/London") -> tuple[datetime, datetime]:
    """
    The first instant of `month` (``YYYY-MM``) and of the next, in `zone`, as aware datetimes.

    Monthly figures follow the partnership's calendar, not UTC: in British
    Summer Time a decision at 23:30 UTC on 30 September belongs to October.
    Raises QueryError for a malformed month or an unknown zone.
    """
    matched = _MONTH.match(month)
    if matched is None:
        raise QueryError(f"not a month: {month!r} (use YYYY-MM)")
    try:
        tz = ZoneInfo(zone)
    except (ValueError, KeyError) as exc:
        raise QueryError(f"unknown time zone {zone!r}") from exc
    year, number = int(matched.group(1)), int(matched.group(2))
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start, end


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
        self.dialect: Dialect = dialect or SQLiteDialect(cast(Path, path))
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


def _median(values: Sequence[timedelta]) -> timedelta | None:
    """The median (the mean of the middle two for an even count), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _on_time(sent: Mapping[str, Row], done_at: Mapping[str, datetime], due_by: Mapping[str, datetime]) -> OnTime:
    on_time = late = unknown = 0
    for output in sent:
        due = due_by.get(output)
        if due is None:
            unknown += 1
        elif output in done_at and done_at[output] <= due:
            on_time += 1
        else:
            late += 1
    return OnTime(on_time=on_time, late=late, unknown=unknown)


def _police_on_time(sent: Mapping[str, Row], late: Mapping[str, int | None]) -> OnTime:
    """The police's clock: 0 minutes late is on time, more is late, no deadline fact or lateness is unknown."""
    known = [late.get(output) for output in sent]
    return OnTime(on_time=sum(1 for m in known if m == 0), late=sum(1 for m in known if m is not None and m > 0),
                  unknown=sum(1 for m in known if m is None))


def _conflict(row: Row) -> ConflictEntry:
    fact = row.fact
    return ConflictEntry(index=row.index, kind=_text(fact, "kind") or "unknown", purpose=_text(fact, "purpose"),
                         ordering_point=_when(fact.get("ordering_point")) or row.at,
                         recorded_at=_when(fact.get("recorded_at")), subjects=row.subjects,
                         values=_texts(fact, "values"), resolved_to=_text(fact, "resolved_to") or "unknown",
                         changes=len(_texts(fact, "about_event_ids")))


def _storable(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """`parameters` with every `_UNSTORABLE` character in text replaced by U+FFFD, the same for every engine."""
    return tuple(_UNSTORABLE.sub("\ufffd", p) if isinstance(p, str) else p for p in parameters)


@dataclass
class _Rewriting:
    """
    A cursor that rewrites ``?`` placeholders for the dialect's driver and makes text storable.

    Every value written or searched for passes here, so cleaning text once
    keeps the engines in agreement: a filter holding NUL finds what the same
    cleaned text was stored as, instead of failing on PostgreSQL only.
    """

    cursor: Any
    dialect: Dialect

    def execute(self, sql: str, parameters: Sequence[Any], /) -> object:
        """Run one statement."""
        return self.cursor.execute(self.dialect.sql(sql), _storable(parameters))

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""
        rows = [_storable(p) for p in seq_of_parameters]
        return self.cursor.executemany(self.dialect.sql(sql), rows) if rows else None

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return list(self.cursor.fetchall())

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self.cursor.fetchone()

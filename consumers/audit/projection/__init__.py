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

from safebus.consumers.audit.projection.dialects import Dialect, PostgreSQLDialect, SQLiteDialect
from safebus.consumers.audit.projection.monthly import ENCOMPASS_RECIPIENT_KINDS, month_bounds
from safebus.consumers.audit.projection.results import (
    MAX_LIMIT,
    Chronology,
    ChronologyEntry,
    ConflictEntry,
    Filters,
    Flow,
    MonthlyStatistics,
    OnTime,
    QueryError,
    ReasonCount,
    Row,
    SettingOnTime,
    ViewEntry,
)
from safebus.consumers.audit.projection.rows import UNREADABLE
from safebus.consumers.audit.projection.store import AuditProjection

__all__ = [
    "ENCOMPASS_RECIPIENT_KINDS", "MAX_LIMIT", "UNREADABLE", "AuditProjection", "Chronology", "ChronologyEntry",
    "ConflictEntry", "Dialect", "Filters", "Flow", "MonthlyStatistics", "OnTime", "PostgreSQLDialect", "QueryError",
    "ReasonCount", "Row", "SQLiteDialect", "SettingOnTime", "ViewEntry", "month_bounds",
]

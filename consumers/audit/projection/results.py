"""
What the projection's queries take and return: the filters, the rows and the reports' value types.

Plain frozen dataclasses, importable without a database, so the audited
reader, the exports and the dashboard depend on these shapes and not on the
store that produces them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from safebus.consumers.audit.projection.schema import _stamp
from safebus.errors import SafebusError
from safebus.schemas.decision import Outcome

__all__ = [
    "MAX_LIMIT", "Chronology", "ChronologyEntry", "ConflictEntry", "Filters", "Flow", "MonthlyStatistics", "OnTime",
    "QueryError", "ReasonCount", "Row", "SettingOnTime", "ViewEntry",
]

MAX_LIMIT = 1000
"""Most rows one query returns: a page an officer can read, and a bound on memory and on the view's size."""


class QueryError(SafebusError, ValueError):
    """A query's parameters are not valid (unknown outcome, a limit out of range, naive times, a bad month)."""



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

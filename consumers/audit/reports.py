"""
Reading the audit trail on someone's behalf: every view, query, export and integrity check recorded as it is made.

The projection (`safebus.consumers.audit.projection`) answers questions; this
module is how people ask them.  Why it is built this way:

- **Looking is itself audited.**  `AuditedReader` wraps every query,
  chronology, statistics, export and integrity check: it computes the answer,
  records an `AuditViewed` fact (who, in which role, which view, the
  parameters, how many records) through the injected `RecordView`, and only
  then returns the answer.  If recording fails, the caller gets the exception
  and no data: nothing is shown that was not logged.  (The view is recorded
  after the answer is computed, not before, because it must say how many
  records were shown.)  A view names the subjects whose records it showed, so
  a person's chronology lists every officer who saw anything about them, even
  through a broad search.
- **Tokens, never names, in the log.**  View parameters hold tokens, agency
  ids and dates.  A chronology can be found by name and date of birth: the
  officer's input is turned into the subject's token with the partnership's
  `Tokeniser`, and the view records only that it was found that way.
- **Names only when the caller supplied them.**  Exports resolve tokens to
  names from a mapping the caller passes, which is built from the
  identifying details an authorised officer typed (`IdentifyingDetails`).
  The name shown is the one entered; every other subject stays a token.
- **Exports for people and for review panels** are written by
  `safebus.consumers.audit.exports` (CSV and JSON, each row with its leaf
  index), **charts** by `safebus.consumers.audit.charts` (plain accessible
  SVG), and **the integrity check**, which only reads, is
  `safebus.consumers.audit.integrity`.  This module records the view; those
  only format or verify what it hands them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from safebus.consumers.audit.charts import statistics_svg
from safebus.consumers.audit.exports import chronology_csv, chronology_json, statistics_csv
from safebus.consumers.audit.facts import AUDIT_PRODUCER, leaf_bytes
from safebus.consumers.audit.integrity import IntegrityStatus, check_integrity
from safebus.consumers.audit.ledger import AuditLedger, NewFact
from safebus.consumers.audit.projection import AuditProjection, Chronology, Filters, Flow, MonthlyStatistics, Row
from safebus.logs import get_logger
from safebus.pseudonyms import Tokeniser
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import AuditViewed

__all__ = ["AuditedReader", "IdentifyingDetails", "LedgerViewSink", "RecordView", "Viewer", "viewed_fact"]

RecordView = Callable[[AuditViewed], None]
"""Records one view of audit data (the lead wires it to the audit topic).  Raises if it could not."""

_TOKEN = re.compile(r"^subj_[0-9a-f]{32}$")
_MAX_VIEW_SUBJECTS = 1000
"""Most subjects one view names: a query shows at most `MAX_LIMIT` rows, so this is never reached in practice."""

_log = get_logger("audit.reports")


# --------------------------------------------------------------------------- who is looking, and at whom

@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Who is reading audit data, and in which role (an officer's id, never their name)."""

    user_id: str
    role: str


@dataclass(frozen=True, kw_only=True)
class IdentifyingDetails:
    """
    A person's identifying details as an authorised officer typed them.

    They exist only in memory for the request: the log, the views and the
    logs get the token, and only the exports the officer asks for show the
    name, exactly as it was entered.
    """

    first_name: str
    surname: str
    date_of_birth: date

    def token(self, tokeniser: Tokeniser) -> str:
        """The person's subject token (stable under case and spacing differences, as tokens are)."""
        return tokeniser.person(first_name=self.first_name, surname=self.surname, date_of_birth=self.date_of_birth)

    @property
    def label(self) -> str:
        """The name and date of birth as entered, for pages and exports."""
        return f"{self.first_name.strip()} {self.surname.strip()} (born {self.date_of_birth.isoformat()})"

    def names(self, tokeniser: Tokeniser) -> dict[str, str]:
        """The one token this officer may see named, mapped to the name they entered."""
        return {self.token(tokeniser): self.label}


def viewed_fact(*, viewer: Viewer, view: str, parameters: Mapping[str, str], results: int, at: datetime,
                subjects: Iterable[str] = (), producer: str = AUDIT_PRODUCER) -> AuditViewed:
    """
    The `AuditViewed` fact for one view: who, which view, the parameters (tokens only), how many records, whom.

    `subjects` are the tokens whose records were shown (anything that is not
    a token is dropped, so a name can never reach the log this way).  Raises
    pydantic's ValidationError if a field breaks the contract.
    """
    tokens = tuple(dict.fromkeys(s for s in subjects if _TOKEN.match(s)))[:_MAX_VIEW_SUBJECTS]
    return AuditViewed(
        **event_metadata(AuditViewed, producer=producer, occurred_at=at, recorded_at=at, subjects=tokens),
        viewer=viewer.user_id, viewer_role=viewer.role, view=view, parameters=dict(parameters), results=results,
    )


# --------------------------------------------------------------------------- the audited reader

class AuditedReader:
    """
    Every way of reading the projection, each recording an `AuditViewed` fact before it returns.

    `channel` prefixes view names (``cli/…``, ``dashboard/…``) so the log
    says where a view came from.
    """

    def __init__(self, projection: AuditProjection, *, record_view: RecordView, clock: Callable[[], datetime],
                 channel: str, producer: str = AUDIT_PRODUCER, zone: str = "Europe/London") -> None:
        """Read `projection`, recording views with `record_view` as `producer`; months are in `zone`."""
        self.projection = projection
        self.record_view = record_view
        self.clock = clock
        self.channel = channel
        self.producer = producer
        self.zone = zone

    def record(self, viewer: Viewer, view: str, parameters: Mapping[str, str], *, results: int,
               subjects: Iterable[str] = ()) -> None:
        """Record one view (for pages that show something other than the methods below return)."""
        fact = viewed_fact(viewer=viewer, view=f"{self.channel}/{view}", parameters=parameters, results=results,
                           at=self.clock(), subjects=subjects, producer=self.producer)
        self.record_view(fact)
        _log.info("audit_viewed", view_id=fact.event_id, view=fact.view, viewer=viewer.user_id, results=results)

    def query(self, viewer: Viewer, filters: Filters, *, view: str = "query") -> list[Row]:
        """The facts matching `filters` (newest first), once the view is recorded."""
        rows = self.projection.query(filters)
        self.record(viewer, view, filters.parameters(), results=len(rows),
                    subjects=(s for r in rows for s in r.subjects))
        return rows

    def chronology(self, viewer: Viewer, subject: str, *, identified_by: str = "token",
                   view: str = "chronology") -> Chronology:
        """
        Everything about `subject` (a token), once the view is recorded.

        `identified_by` says how the officer found the person (``token`` or
        ``name-and-date-of-birth``), never the details themselves.
        """
        found = self.projection.chronology(subject)
        self.record(viewer, view, {"subject": subject, "identified_by": identified_by}, results=len(found),
                    subjects=(subject,))
        return found

    def find(self, viewer: Viewer, details: IdentifyingDetails,
             tokeniser: Tokeniser) -> tuple[Chronology, dict[str, str]]:
        """The chronology of the person `details` identify, and the token-to-name mapping for exports."""
        names = details.names(tokeniser)
        (token,) = names
        return self.chronology(viewer, token, identified_by="name-and-date-of-birth"), names

    def flows(self, viewer: Viewer, *, since: datetime | None = None, until: datetime | None = None,
              view: str = "flows") -> list[Flow]:
        """Decision counts between agencies and recipients, once the view is recorded."""
        found = self.projection.flows(since, until)
        parameters = {k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None}
        self.record(viewer, view, parameters, results=len(found))
        return found

    def monthly_statistics(self, viewer: Viewer, month: str, *, view: str = "statistics") -> MonthlyStatistics:
        """The month's figures, once the view is recorded."""
        found = self.projection.monthly_statistics(month, zone=self.zone)
        self.record(viewer, view, {"month": month}, results=1)
        return found

    def chronology_csv(self, viewer: Viewer, subject: str, *, names: Mapping[str, str] | None = None,
                       identified_by: str = "token") -> str:
        """The subject's chronology as CSV (names only for tokens in `names`), once the export is recorded."""
        found = self.projection.chronology(subject)
        self.record(viewer, "chronology-export-csv", {"subject": subject, "identified_by": identified_by},
                    results=len(found), subjects=(subject,))
        return chronology_csv(found, names=names)

    def chronology_json(self, viewer: Viewer, subject: str, *, names: Mapping[str, str] | None = None,
                        identified_by: str = "token") -> str:
        """The subject's chronology as JSON (names only for tokens in `names`), once the export is recorded."""
        found = self.projection.chronology(subject)
        self.record(viewer, "chronology-export-json", {"subject": subject, "identified_by": identified_by},
                    results=len(found), subjects=(subject,))
        return chronology_json(found, names=names, generated_at=self.clock(), generated_by=viewer)

    def statistics_csv(self, viewer: Viewer, month: str) -> str:
        """The month's figures as CSV, once the export is recorded."""
        found = self.projection.monthly_statistics(month, zone=self.zone)
        self.record(viewer, "statistics-export-csv", {"month": month}, results=1)
        return statistics_csv(found)

    def statistics_svg(self, viewer: Viewer, month: str) -> str:
        """The month's figures as an SVG bar chart, once the export is recorded."""
        found = self.projection.monthly_statistics(month, zone=self.zone)
        self.record(viewer, "statistics-export-svg", {"month": month}, results=1)
        return statistics_svg(found)

    def integrity(self, viewer: Viewer, ledger: AuditLedger) -> IntegrityStatus:
        """Verify the ledger (`check_integrity`), once the view is recorded."""
        status = check_integrity(ledger, now=self.clock())
        self.record(viewer, "integrity", {"verified": "yes" if status.verified else "no"},
                    results=len(status.problems))
        return status


class LedgerViewSink:
    """
    A `RecordView` that appends straight to a ledger and re-projects: tests and single-process demos only.

    In production views go to the audit topic, so that the one sequencer
    orders them with every other fact; this shortcut writes to the ledger
    from a second place and must not be used where a sequencer runs.
    """

    def __init__(self, ledger: AuditLedger, projection: AuditProjection, *, clock: Callable[[], datetime]) -> None:
        """Append to `ledger`, then bring `projection` up to date."""
        self.ledger = ledger
        self.projection = projection
        self.clock = clock
        self._lock = threading.Lock()  # the ledger's one connection takes one transaction at a time

    def __call__(self, fact: AuditViewed) -> None:
        """Append `fact` and project it."""
        with self._lock:
            self.ledger.append([NewFact(fact_id=fact.event_id, fact_type=fact.event_type, body=leaf_bytes(fact))],
                               now=self.clock())
            self.projection.catch_up(self.ledger)

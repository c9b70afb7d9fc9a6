"""
Reading the audit trail on someone's behalf: every view recorded, exports, charts and the integrity check.

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
- **Exports for people and for review panels.**  A chronology exports as CSV
  (a spreadsheet for a subject access request) and as JSON (for a domestic
  homicide review), each row with its leaf index so any entry can be proved
  against the log.  CSV cells that a spreadsheet would run as a formula are
  neutralised.
- **Charts are plain SVG written here**, with ``<title>``, ``<desc>`` and
  text labels carrying every number, so a screen reader gets the figures and
  the page needs no script or plotting library.  All text is XML-escaped.
- **The integrity check only reads.**  It verifies the ledger as it stands,
  with `safebus.consumers.audit.verify.verify_export`, from export lines built
  here without signing anything (`export_lines` signs a checkpoint first,
  which a read-only dashboard must not do).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape

from safebus.consumers.audit.facts import AUDIT_PRODUCER, leaf_bytes
from safebus.consumers.audit.ledger import AuditLedger, NewFact, StoredCheckpoint
from safebus.consumers.audit.projection import (
    AuditProjection,
    Chronology,
    ChronologyEntry,
    Filters,
    Flow,
    MonthlyStatistics,
    OnTime,
    Row,
    ViewEntry,
)
from safebus.consumers.audit.verify import EXPORT_FORMAT, Problem, verify_export
from safebus.logs import get_logger
from safebus.pseudonyms import Tokeniser
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import AuditViewed

__all__ = [
    "CHRONOLOGY_FORMAT", "AuditedReader", "IdentifyingDetails", "IntegrityStatus", "LedgerViewSink", "RecordView",
    "Viewer", "check_integrity", "chronology_csv", "chronology_json", "flows_svg", "statistics_csv", "statistics_svg",
    "viewed_fact",
]

RecordView = Callable[[AuditViewed], None]
"""Records one view of audit data (the lead wires it to the audit topic).  Raises if it could not."""

CHRONOLOGY_FORMAT = "safebus-chronology/1"

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


# --------------------------------------------------------------------------- integrity

@dataclass(frozen=True, kw_only=True)
class IntegrityStatus:
    """Whether the ledger verified just now, and what was wrong if not (problems name leaf indexes)."""

    checked_at: datetime
    size: int
    checkpoint: StoredCheckpoint | None
    leaves_checked: int
    covered: int
    problems: tuple[Problem, ...]

    @property
    def verified(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    @property
    def first_bad_leaf(self) -> int | None:
        """The lowest leaf index a problem names."""
        named = [p.index for p in self.problems if p.index is not None]
        return min(named) if named else None


def _ledger_lines(ledger: AuditLedger, now: datetime) -> Iterator[str]:
    """The ledger in export form, as stored: no checkpoint is signed, nothing is written."""
    yield json.dumps({"format": EXPORT_FORMAT, "origin": ledger.identity.origin, "vkey": ledger.identity.vkey,
                      "exported_at": now.isoformat()})
    for leaf in ledger.leaves():
        fact: object
        try:
            fact = json.loads(leaf.body)
        except (ValueError, UnicodeDecodeError):
            fact = leaf.body.decode("utf-8", "replace")  # cannot hash as the original did: named by its index
        yield json.dumps({"index": leaf.index, "fact": fact, "receipt": base64.b64encode(leaf.receipt).decode()},
                         ensure_ascii=False)
    for checkpoint in ledger.checkpoints():
        yield json.dumps({"checkpoint": checkpoint.note.decode()})


def check_integrity(ledger: AuditLedger, *, now: datetime) -> IntegrityStatus:
    """
    Verify every leaf's receipt, the tree, every checkpoint and their consistency, against the ledger's own key.

    Reads the whole log (O(n): a million leaves take minutes; run it off the
    request thread).
    """
    report = verify_export(_ledger_lines(ledger, now), pinned=ledger.identity, complete=False)
    status = IntegrityStatus(checked_at=now, size=ledger.size, checkpoint=ledger.latest_checkpoint(),
                             leaves_checked=report.leaves, covered=report.covered, problems=tuple(report.problems))
    _log.info("audit_integrity_checked", leaves=report.leaves, problems=len(report.problems),
              first_bad_leaf=status.first_bad_leaf)
    return status


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


# --------------------------------------------------------------------------- exports

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character is neutralised with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _named(token: str, names: Mapping[str, str]) -> str:
    return names.get(token, token)


_CHRONOLOGY_COLUMNS = ("at", "kind", "outcome", "subjects", "by", "from_agency", "to", "recipient_kind", "agreement",
                       "clause", "lawful_basis", "consent", "fields_released", "purpose", "reason", "detail",
                       "output_id", "leaf_index", "fact_id")


def _entry_record(entry: ChronologyEntry, names: Mapping[str, str]) -> dict[str, object]:
    return {
        "at": entry.at.isoformat(), "kind": entry.kind, "outcome": entry.outcome,
        "subjects": [_named(s, names) for s in entry.subjects], "by": entry.by, "from_agency": entry.from_agency,
        "to": entry.to, "recipient_kind": entry.recipient_kind, "agreement": entry.agreement, "clause": entry.clause,
        "lawful_basis": list(entry.lawful_basis), "consent": entry.consent,
        "fields_released": list(entry.fields_released), "purpose": entry.purpose, "reason": entry.reason,
        "detail": entry.detail, "output_id": entry.output_id, "leaf_index": entry.index, "fact_id": entry.fact_id,
    }


def _view_record(view: ViewEntry, subject: str) -> dict[str, object]:
    parameters = "; ".join(f"{k}={v}" for k, v in sorted(view.parameters.items()))
    return {"at": view.at.isoformat(), "kind": "viewed", "subjects": [subject], "by": view.viewer,
            "detail": f"{view.view} as {view.viewer_role}: {view.results} record(s); {parameters}",
            "leaf_index": view.index}


def chronology_csv(chronology: Chronology, *, names: Mapping[str, str] | None = None) -> str:
    """
    The chronology as CSV, one row per entry and per view, oldest first.

    Tokens in `names` are shown as the mapped name (what the officer
    entered); every other subject stays a token.  Lists are ``; ``-joined.
    """
    known = names or {}
    subject = _named(chronology.subject, known)
    records = [_entry_record(e, known) for e in chronology.entries]
    records += [_view_record(v, subject) for v in chronology.views]
    records.sort(key=lambda r: (str(r["at"]), int(str(r["leaf_index"]))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CHRONOLOGY_COLUMNS)
    for record in records:
        writer.writerow([_cell("; ".join(map(str, v)) if isinstance(v, list) else v)
                         for v in (record.get(c) for c in _CHRONOLOGY_COLUMNS)])
    return out.getvalue()


def chronology_json(chronology: Chronology, *, names: Mapping[str, str] | None = None,
                    generated_at: datetime | None = None, generated_by: Viewer | None = None) -> str:
    """
    The chronology as a JSON document for a review panel: the subject, every entry, every view.

    Every entry keeps its leaf index and fact id, so the panel can ask for an
    inclusion proof of any of them.  Only tokens in `names` are named.
    """
    known = names or {}
    subject: dict[str, str] = {"token": chronology.subject}
    if chronology.subject in known:
        subject["name"] = known[chronology.subject]
    document = {
        "format": CHRONOLOGY_FORMAT,
        "subject": subject,
        "generated_at": generated_at.isoformat() if generated_at else None,
        "generated_by": {"user_id": generated_by.user_id, "role": generated_by.role} if generated_by else None,
        "entries": [_entry_record(e, known) for e in chronology.entries],
        "viewed_by": [{"at": v.at.isoformat(), "viewer": v.viewer, "viewer_role": v.viewer_role, "view": v.view,
                       "parameters": dict(v.parameters), "results": v.results, "leaf_index": v.index}
                      for v in chronology.views],
        "proof": "Each leaf_index is a leaf of the partnership's tamper-evident audit log: ask for an inclusion "
                 "proof ('safebus audit prove') to check any entry against a signed checkpoint.",
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _duration(value: timedelta | None) -> str:
    """``H:MM:SS`` (hours may pass 24), or ``unknown``."""
    if value is None:
        return "unknown"
    seconds = int(value.total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _rate(on_time: OnTime) -> str:
    return "unknown" if on_time.rate is None else f"{on_time.rate * 100:.1f}%"


def _statistics_rows(stats: MonthlyStatistics) -> list[tuple[str, str, object, str]]:
    rows: list[tuple[str, str, object, str]] = [
        ("period", "month", stats.month, ""), ("period", "time zone", stats.zone, ""),
        ("encompass", "notifications sent", stats.notifications_sent, "shares to education settings"),
        ("encompass", "delivered", stats.delivered, ""),
    ]
    for name, on_time in (("delivered", stats.delivered_on_time), ("acknowledged", stats.acknowledged_on_time)):
        if name == "acknowledged":
            rows.append(("encompass", "acknowledged", stats.acknowledged, ""))
        rows += [
            ("encompass", f"{name} on time", on_time.on_time, "before the deadline"),
            ("encompass", f"{name} late", on_time.late, "after the deadline, or not at all"),
            ("encompass", f"{name}: deadline unknown", on_time.unknown, "no acknowledgement or escalation gave one"),
            ("encompass", f"{name} on-time rate", _rate(on_time), "of those with a known deadline"),
        ]
    rows.append(("encompass", "median time to acknowledge", _duration(stats.median_time_to_acknowledge),
                 "hours:minutes:seconds from delivery"))
    police = stats.police_shared_on_time
    rows += [
        ("police", "shared on time", police.on_time, "before the setting's next school day after the incident"),
        ("police", "shared late", police.late, "after it, whatever the school did"),
        ("police", "lateness unknown", police.unknown, "no deadline fact, or no incident time"),
        ("police", "shared on-time rate", _rate(police), "of those with a known lateness"),
        ("police", "median minutes shared late", "unknown" if stats.median_minutes_shared_late is None
         else f"{stats.median_minutes_shared_late:.0f}", "of those shared late"),
    ]
    for setting in stats.by_setting:
        rows += [
            ("by setting", f"{setting.recipient}: sent", setting.sent, ""),
            ("by setting", f"{setting.recipient}: delivered", setting.delivered, ""),
            ("by setting", f"{setting.recipient}: acknowledged", setting.acknowledged, ""),
            ("by setting", f"{setting.recipient}: acknowledged on-time rate", _rate(setting.acknowledged_on_time),
             f"{setting.acknowledged_on_time.on_time} on time, {setting.acknowledged_on_time.late} late, "
             f"{setting.acknowledged_on_time.unknown} deadline unknown"),
            ("by setting", f"{setting.recipient}: police shared on-time rate", _rate(setting.police_shared_on_time),
             f"{setting.police_shared_on_time.on_time} on time, {setting.police_shared_on_time.late} late, "
             f"{setting.police_shared_on_time.unknown} unknown"),
        ]
    rows += [("withheld", r.label, r.count, r.reason) for r in stats.withheld_by_reason]
    rows += [("dead letters", r.reason, r.count, "") for r in stats.dead_letters_by_reason]
    rows.append(("state conflicts", "count", len(stats.state_conflicts), "same-instant changes that disagreed"))
    rows += [("state conflicts", f"{c.kind} at {c.ordering_point.isoformat()}", c.resolved_to,
              f"{' / '.join(c.values)}; {' '.join(c.subjects)}") for c in stats.state_conflicts]
    return rows


def statistics_csv(stats: MonthlyStatistics) -> str:
    """The month's figures as CSV: section, measure, value, detail."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("section", "measure", "value", "detail"))
    for row in _statistics_rows(stats):
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _x(text: object) -> str:
    """Text escaped for SVG content and double-quoted attributes."""
    return escape(str(text), {'"': "&quot;"})


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


_SVG_NS = "http://www.w3.org/2000/svg"
_FONT = 'font-family="Arial, Helvetica, sans-serif"'


def statistics_svg(stats: MonthlyStatistics, *, id_prefix: str = "stats") -> str:
    """
    The month's figures as an accessible horizontal bar chart (standalone SVG; embeddable in HTML).

    Every bar has a text label and its value; ``<title>`` and ``<desc>`` say
    what the chart shows and list every figure.
    """
    sections: list[tuple[str, list[tuple[str, int, str]]]] = [
        ("Operation Encompass notifications", [
            ("Sent", stats.notifications_sent, ""), ("Delivered", stats.delivered, ""),
            ("Delivered on time", stats.delivered_on_time.on_time, f"rate {_rate(stats.delivered_on_time)}"),
            ("Acknowledged", stats.acknowledged, ""),
            ("Acknowledged on time", stats.acknowledged_on_time.on_time,
             f"rate {_rate(stats.acknowledged_on_time)}"),
            ("Shared by the police on time", stats.police_shared_on_time.on_time,
             f"rate {_rate(stats.police_shared_on_time)}"),
            ("Shared by the police late", stats.police_shared_on_time.late, ""),
        ]),
        ("Shares withheld, by reason", [(r.label, r.count, r.reason) for r in stats.withheld_by_reason]),
        ("Dead letters, by reason", [(r.reason, r.count, "") for r in stats.dead_letters_by_reason]),
    ]
    title = f"Audit statistics for {stats.month}"
    summary = [f"{stats.notifications_sent} Operation Encompass notifications sent, {stats.delivered} delivered "
               f"({stats.delivered_on_time.on_time} on time, on-time rate {_rate(stats.delivered_on_time)}), "
               f"{stats.acknowledged} acknowledged ({stats.acknowledged_on_time.on_time} on time, on-time rate "
               f"{_rate(stats.acknowledged_on_time)}), median time to acknowledge "
               f"{_duration(stats.median_time_to_acknowledge)}.",
               f"The police shared {stats.police_shared_on_time.on_time} on time and "
               f"{stats.police_shared_on_time.late} late (unknown for {stats.police_shared_on_time.unknown}).",
               f"{len(stats.state_conflicts)} state conflicts."]
    summary.append(f"{stats.withheld} shares withheld" + (": " + "; ".join(
        f"{r.label} {r.count}" for r in stats.withheld_by_reason) if stats.withheld_by_reason else "") + ".")
    summary.append(f"{stats.dead_letters} dead letters" + (": " + "; ".join(
        f"{r.reason} {r.count}" for r in stats.dead_letters_by_reason) if stats.dead_letters_by_reason else "") + ".")
    largest = max([1, *(n for _, bars in sections for _, n, _ in bars)])
    width, label_width, bar_width, row, top = 760, 300, 360, 26, 56
    parts: list[str] = []
    y = top
    for heading, bars in sections:
        parts.append(f'<text x="10" y="{y + 14}" font-size="15" font-weight="bold" fill="#0b0c0c">{_x(heading)}</text>')
        y += row
        if not bars:
            parts.append(f'<text x="20" y="{y + 14}" font-size="13" fill="#505a5f">None this month</text>')
            y += row
        for label, count, note in bars:
            length = round(bar_width * count / largest)
            tooltip = _x(f"{label}: {count}" + (f" ({note})" if note else ""))
            parts.append(
                f'<g><title>{tooltip}</title>'
                f'<text x="20" y="{y + 14}" font-size="13" fill="#0b0c0c">{_x(_short(label, 40))}</text>'
                f'<rect x="{label_width}" y="{y}" width="{length}" height="18" fill="#1d70b8"/>'
                f'<text x="{label_width + length + 6}" y="{y + 14}" font-size="13" fill="#0b0c0c">{count}</text></g>')
            y += row
        y += 8
    height = y + 10
    return (
        f'<svg xmlns="{_SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" {_FONT}>'
        f'<title id="{id_prefix}-title">{_x(title)}</title>'
        f'<desc id="{id_prefix}-desc">{_x(" ".join(summary))}</desc>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="10" y="28" font-size="18" font-weight="bold" fill="#0b0c0c">{_x(title)}</text>'
        + "".join(parts) + "</svg>\n"
    )


_OUTCOME_COLOURS = {"shared": "#00703c", "deferred": "#f47738", "escalated": "#d4351c", "withheld": "#6f777b"}


def _target(flow: Flow) -> str:
    if flow.recipient:
        return flow.recipient
    return f"not shared ({flow.recipient_kind})" if flow.recipient_kind else "not shared"


def flows_svg(flows: Sequence[Flow], *, id_prefix: str = "flows", caption: str = "Flows between agencies") -> str:
    """
    Decisions between producing agencies (left) and recipients (right) as an accessible SVG diagram.

    One line per (agency, recipient, outcome), as thick as its count and
    labelled with it just before the recipient; withheld decisions lead to a "not shared" node for the
    recipient kind.  ``<desc>`` lists every flow in words.
    """
    edges: dict[tuple[str, str, str], int] = {}
    for flow in flows:
        key = (flow.agency, _target(flow), flow.outcome)
        edges[key] = edges.get(key, 0) + flow.count
    sources = sorted({a for a, _, _ in edges})
    targets = sorted({t for _, t, _ in edges}, key=lambda t: (t.startswith("not shared"), t))
    spacing, top, width = 52, 90, 780
    height = top + max(len(sources), len(targets), 1) * spacing + 20
    ys = {name: top + i * spacing for i, name in enumerate(sources)}
    yt = {name: top + i * spacing for i, name in enumerate(targets)}
    largest = max([1, *edges.values()])
    lines: list[str] = []
    into: dict[str, int] = {}
    for (source, target, outcome), count in sorted(edges.items()):
        offset = into.get(target, 0)  # several lines into one node: spread them, and stack their labels
        into[target] = offset + 1
        y1, y2 = ys[source] + 18, yt[target] + 12 + (offset % 3) * 6
        colour = _OUTCOME_COLOURS.get(outcome, "#4c2c92")
        stroke = 1.5 + 8 * count / largest
        dash = ' stroke-dasharray="6 4"' if outcome == "withheld" else ""
        label = f"{count} {outcome}"
        lines.append(
            f'<g><title>{_x(f"{source} to {target}: {label}")}</title>'
            f'<path d="M 250 {y1} C 390 {y1}, 390 {y2}, 530 {y2}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke:.1f}" stroke-opacity="0.8"{dash}/>'
            f'<text x="524" y="{yt[target] - 4 - offset * 13}" font-size="12" text-anchor="end" fill="#0b0c0c" '
            f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{_x(label)}</text></g>')
    nodes: list[str] = []
    for name, y in ys.items():
        nodes.append(f'<g><title>{_x(name)}</title><rect x="10" y="{y}" width="240" height="36" rx="4" fill="#f3f2f1" '
                     f'stroke="#0b0c0c"/><text x="20" y="{y + 23}" font-size="13" fill="#0b0c0c">'
                     f'{_x(_short(name, 32))}</text></g>')
    for name, y in yt.items():
        nodes.append(f'<g><title>{_x(name)}</title><rect x="530" y="{y}" width="240" height="36" rx="4" fill="#f3f2f1" '
                     f'stroke="#0b0c0c"/><text x="540" y="{y + 23}" font-size="13" fill="#0b0c0c">'
                     f'{_x(_short(name, 32))}</text></g>')
    described = "; ".join(f"{s} to {t}: {n} {o}" for (s, t, o), n in sorted(edges.items())) or "no decisions"
    return (
        f'<svg xmlns="{_SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" {_FONT}>'
        f'<title id="{id_prefix}-title">{_x(caption)}</title>'
        f'<desc id="{id_prefix}-desc">{_x("Sharing decisions from producing agencies to recipients. " + described)}'
        f'</desc><rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="10" y="28" font-size="16" font-weight="bold" fill="#0b0c0c">From agency</text>'
        f'<text x="530" y="28" font-size="16" font-weight="bold" fill="#0b0c0c">To recipient</text>'
        f'<text x="10" y="50" font-size="12" fill="#505a5f">Line width shows the number of decisions; dashed lines '
        f'were withheld.</text>'
        + "".join(lines) + "".join(nodes) + "</svg>\n"
    )

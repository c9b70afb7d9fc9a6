"""
Audit data as files people take away: a chronology as CSV or JSON, a month's figures as CSV.

Apart from the reader (`safebus.consumers.audit.reports`), which records who
asked, because writing a file is formatting only: these functions take what
the projection answered and never read or record anything themselves.  A
chronology exports as CSV (a spreadsheet for a subject access request) and as
JSON (for a domestic homicide review), each row with its leaf index so any
entry can be proved against the log; only tokens the caller maps to names are
named.  CSV cells a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from safebus.consumers.audit.projection import Chronology, ChronologyEntry, MonthlyStatistics, OnTime, ViewEntry

if TYPE_CHECKING:
    from safebus.consumers.audit.reports import Viewer

__all__ = ["CHRONOLOGY_FORMAT", "chronology_csv", "chronology_json", "hours_minutes_seconds", "on_time_rate",
           "statistics_csv"]

CHRONOLOGY_FORMAT = "safebus-chronology/1"


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


def hours_minutes_seconds(value: timedelta | None) -> str:
    """``H:MM:SS`` (hours may pass 24), or ``unknown``."""
    if value is None:
        return "unknown"
    seconds = int(value.total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def on_time_rate(on_time: OnTime) -> str:
    """An on-time rate as a percentage to one decimal place, or ``unknown``."""
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
            ("encompass", f"{name} on-time rate", on_time_rate(on_time), "of those with a known deadline"),
        ]
    rows.append(("encompass", "median time to acknowledge", hours_minutes_seconds(stats.median_time_to_acknowledge),
                 "hours:minutes:seconds from delivery"))
    police = stats.police_shared_on_time
    rows += [
        ("police", "shared on time", police.on_time, "before the setting's next school day after the incident"),
        ("police", "shared late", police.late, "after it, whatever the school did"),
        ("police", "lateness unknown", police.unknown, "no deadline fact, or no incident time"),
        ("police", "shared on-time rate", on_time_rate(police), "of those with a known lateness"),
        ("police", "median minutes shared late", "unknown" if stats.median_minutes_shared_late is None
         else f"{stats.median_minutes_shared_late:.0f}", "of those shared late"),
    ]
    for setting in stats.by_setting:
        rows += [
            ("by setting", f"{setting.recipient}: sent", setting.sent, ""),
            ("by setting", f"{setting.recipient}: delivered", setting.delivered, ""),
            ("by setting", f"{setting.recipient}: acknowledged", setting.acknowledged, ""),
            ("by setting", f"{setting.recipient}: acknowledged on-time rate",
             on_time_rate(setting.acknowledged_on_time),
             f"{setting.acknowledged_on_time.on_time} on time, {setting.acknowledged_on_time.late} late, "
             f"{setting.acknowledged_on_time.unknown} deadline unknown"),
            ("by setting", f"{setting.recipient}: police shared on-time rate",
             on_time_rate(setting.police_shared_on_time),
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

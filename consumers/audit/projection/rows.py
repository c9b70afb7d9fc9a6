"""
Fact to row and back: how one audit leaf becomes the projection's indexed columns, and a row a report entry.

Leaves are read as JSON, not validated against today's contracts, so this
is the one place that knows which field of which fact type fills which
column; the store only moves the tuples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from safebus.consumers.audit.projection.results import ChronologyEntry, ConflictEntry, Row, ViewEntry
from safebus.consumers.audit.projection.schema import _stamp, _unstamp
from safebus.schemas.audit import (
    Acknowledged,
    AuditViewed,
    DeadLettered,
    DeadlineSet,
    Delivered,
    Escalated,
    StateConflict,
)
from safebus.schemas.decision import SharingDecision, SubjectErased

__all__ = [
    "UNREADABLE",
]

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


def _conflict(row: Row) -> ConflictEntry:
    fact = row.fact
    return ConflictEntry(index=row.index, kind=_text(fact, "kind") or "unknown", purpose=_text(fact, "purpose"),
                         ordering_point=_when(fact.get("ordering_point")) or row.at,
                         recorded_at=_when(fact.get("recorded_at")), subjects=row.subjects,
                         values=_texts(fact, "values"), resolved_to=_text(fact, "resolved_to") or "unknown",
                         changes=len(_texts(fact, "about_event_ids")))

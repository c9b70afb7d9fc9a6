"""
The projection's tables and how values are stored in them, in SQL both engines accept.

Kept apart so the store, the row mapping and the dialects share one
definition of the columns and of the time encoding (fixed-width UTC text,
so text order is time order in any engine).
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__: list[str] = []


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


def _stamp(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order in any engine."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _unstamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None

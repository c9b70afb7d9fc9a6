"""
Reads the audit topic back as typed facts.

The audit topic carries more than one kind of fact (sharing decisions,
erasures); readers take the kinds they want and skip the rest, so a new kind
of fact never breaks an old reader.  Duplicates from at-least-once delivery are
collapsed by event id.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from safebus.kafka_io import read_topic
from safebus.records import Record
from safebus.schemas._base import Event

__all__ = [
    "facts_of",
    "read_facts",
]

E = TypeVar("E", bound=Event)


def facts_of(records: list[Record], kind: type[E]) -> dict[str, E]:
    """The facts of `kind` among `records`, by event id (later duplicates ignored)."""
    wanted = kind.type_name().encode()
    found: dict[str, E] = {}
    for record in records:
        if wanted not in record.value:  # cheap pre-filter before parsing
            continue
        try:
            fact = kind.model_validate_json(record.value)
        except ValidationError:
            continue
        found.setdefault(fact.event_id, fact)
    return found


def read_facts(bootstrap: str, topic: str, kind: type[E]) -> dict[str, E]:
    """Every fact of `kind` now on `topic`, by event id."""
    return facts_of(read_topic(bootstrap, topic), kind)

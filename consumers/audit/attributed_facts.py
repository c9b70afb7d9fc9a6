"""
Audit facts a worker may act on: signed by the partnership component that states such facts.

Why: the audit topic is writable by anyone who can reach the broker.  The audit
sequencer refuses unsigned facts from the log (`safebus.fact_signing`), but a
worker that *acts* on the topic — the Encompass deadline monitor stops an
escalation when it reads an acknowledgement — must not be steered by a record
the log would refuse: a forged ``audit.acknowledged`` written with a plain
Kafka producer would otherwise silence the escalation of an alert nobody read.

So a fact is acted on only if (1) its ``safebus-fact-signature/1`` verifies
against a router or service key the signed directory accepts (`verify_fact`,
as the sequencer checks it), and (2) its signer is one that states facts of
that type (`FACT_AUTHORS`, below: a Key Adult's acknowledgement comes from the
inbox web app, never from the gateway's key).  Anything else is ignored with a
structlog warning naming the record's coordinates and the reason, never its
content.  It is not dead-lettered here: the sequencer reads the same topic and
already turns each unattributed fact into exactly one dead letter, so a second
one from the monitor would double the evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from safebus.directory import AgencyKind, Directory
from safebus.fact_signing import Service, UnattributedFact, verify_fact
from safebus.logs import get_logger
from safebus.records import Record

__all__ = [
    "FACT_AUTHORS",
    "ROUTER",
    "attributed_facts",
]

_log = get_logger("audit.attributed_facts")

ROUTER = "router"
"""Stands for the directory's router, whatever its id."""

FACT_AUTHORS: Mapping[str, frozenset[str]] = {
    "audit.sharing-decision": frozenset({ROUTER}),
    "audit.enrolment-moved": frozenset({ROUTER}),
    "audit.delivered": frozenset({Service.INBOX_WORKER.agency_id, Service.QUEUE_WORKER.agency_id}),
    "audit.acknowledged": frozenset({Service.INBOX_WEB.agency_id}),
    "audit.file-transfer-confirmed": frozenset({Service.INBOX_WEB.agency_id}),
    "audit.escalated": frozenset({Service.DEADLINE_MONITOR.agency_id}),
    "audit.deadline-set": frozenset({Service.DEADLINE_MONITOR.agency_id}),
}
"""Which component states each fact type that changes a worker's state; other types: any signed component."""


def attributed_facts(records: Iterable[Record], directory: Directory) -> list[dict[str, Any]]:
    """
    The facts among `records` (as JSON objects) that their stated author signed; the rest logged and dropped.

    Never raises for a record's content: an unsigned, wrongly signed, unparsable
    or misattributed record is a warning, and the batch goes on.
    """
    accepted = []
    for record in records:
        try:
            accepted.append(_attributed(record, directory))
        except UnattributedFact as exc:
            _log.warning("audit_fact_ignored", topic=record.topic, partition=record.partition,
                         offset=record.offset, reason=exc.reason)
    return accepted


def _attributed(record: Record, directory: Directory) -> dict[str, Any]:
    """The fact `record` carries, if its stated author signed it; raises `UnattributedFact` otherwise."""
    signer = verify_fact(record, directory)
    try:
        parsed = json.loads(record.value)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise UnattributedFact("not-an-audit-fact", "not a JSON object")
    authors = FACT_AUTHORS.get(str(parsed.get("event_type")))
    agency = directory.get(signer)
    role = ROUTER if agency is not None and agency.kind is AgencyKind.ROUTER else signer
    if authors is not None and role not in authors:
        raise UnattributedFact("fact-author-not-permitted", f"{signer} does not state {parsed.get('event_type')!r}")
    return parsed

"""
The audit log's leaves and checkpoints as Kafka records, so a new host can rebuild the ledger byte for byte.

Why a topic: the ledger is one SQLite file on the sequencer's disk, and its
order (the order the sequencer happened to read the audit topic's partitions)
cannot be recomputed from the audit topic itself.  So every leaf, once
appended, is also written in index order to ``<prefix>.audit.leaves`` (one
partition, three replicas, never deleted), with everything its row holds; and
every checkpoint note carries the time it was signed.  `safebus audit rebuild`
reads both back into a fresh ledger, checking every leaf's hash, its receipt
under the log's public key and its place, and every checkpoint against the
rebuilt tree.

A leaf record: key ``<index>`` (decimal), value the canonical JSON object
``{"index", "fact_id", "fact_type", "body" (base64), "receipt" (base64),
"appended_at"}`` (body and receipt unpadded base64url, `safebus.b64`).  The same index may appear twice (a publish whose
acknowledgement was lost is repeated); a rebuild takes it once and refuses two
that differ.
"""

from __future__ import annotations

import json
from datetime import datetime

from safebus.b64 import b64d, b64e
from safebus.consumers.audit.ledger import Leaf, StoredCheckpoint
from safebus.errors import SafebusError
from safebus.jcs import canonical_json
from safebus.merkle import leaf_hash
from safebus.records import Output, Record

__all__ = ["CHECKPOINT_CREATED_AT", "NotALeaf", "checkpoint_record", "leaf_from_record", "leaf_record",
           "signed_at"]

CHECKPOINT_CREATED_AT = "safebus-checkpoint-created-at"
"""Header of a checkpoint record: when the sequencer signed it (ISO 8601), so a rebuild stores the same time."""


class NotALeaf(SafebusError, ValueError):
    """A record on the leaves topic that is not a well-formed leaf."""


def leaf_record(leaf: Leaf, *, topic: str) -> Output:
    """Leaf `leaf` as the record the sequencer writes to the leaves topic."""
    value = {"index": leaf.index, "fact_id": leaf.fact_id, "fact_type": leaf.fact_type,
             "body": b64e(leaf.body), "receipt": b64e(leaf.receipt), "appended_at": leaf.appended_at.isoformat()}
    return Output(topic=topic, key=str(leaf.index).encode(), value=canonical_json(value))


def leaf_from_record(record: Record) -> Leaf:
    """The leaf a leaves-topic record holds (its hash recomputed from its body); `NotALeaf` if it is not one."""
    try:
        value = json.loads(record.value)
        index = value["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise NotALeaf(f"offset {record.offset}: index {index!r} is not a leaf index")
        if record.key != str(index).encode():
            raise NotALeaf(f"offset {record.offset}: key {record.key!r} is not the leaf's index {index}")
        body = b64d(value["body"])
        return Leaf(index=index, fact_id=str(value["fact_id"]), fact_type=str(value["fact_type"]), body=body,
                    leaf_hash=leaf_hash(body), receipt=b64d(value["receipt"]),
                    appended_at=datetime.fromisoformat(value["appended_at"]))
    except NotALeaf:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # JSON, base64 and dates all raise ValueError
        raise NotALeaf(f"offset {record.offset}: not a leaf record ({type(exc).__name__}: {exc})") from exc


def checkpoint_record(checkpoint: StoredCheckpoint, *, topic: str) -> Output:
    """A signed checkpoint as published: key the size, value the note, and when it was signed."""
    return Output(topic=topic, key=str(checkpoint.size).encode(), value=checkpoint.note,
                  headers=((CHECKPOINT_CREATED_AT, checkpoint.created_at.isoformat().encode()),))


def signed_at(record: Record) -> datetime | None:
    """When a checkpoint record's note was signed, if it says (older records do not)."""
    value = record.header(CHECKPOINT_CREATED_AT)
    try:
        return datetime.fromisoformat(value) if value is not None else None
    except ValueError:
        return None

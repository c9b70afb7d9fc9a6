"""
The size and shape limits of everything on the bus, stated once.

Why one place: a limit that one component enforces and another does not know
is how a worker dies.  On the old main, a record just under the broker's limit
was readable by the router, but its dead letter (the same bytes plus headers)
was larger than the producer's maximum request, so the batch could never be
made durable and the router stopped for good.  Every number below is derived
from the ones above it, and ``tests/unit/core/test_limits.py`` checks that they
agree with each other, with the producers' settings (`safebus.kafka_io`, the
Faust app) and with the broker's (``deploy/broker.py``).

The chain, from the outside in::

    broker   message.max.bytes        BROKER_MESSAGE_MAX_BYTES   what anyone can write to a topic
    producer message.max.bytes        PRODUCER_MAX_REQUEST_BYTES what our own producers may send (< broker)
    record   value read in full       MAX_RECORD_BYTES           larger values are refused unread
    dead letter                       raw bytes if <= MAX_RECORD_BYTES, else digest + prefix
                                      always <= MAX_DEAD_LETTER_BYTES < PRODUCER_MAX_REQUEST_BYTES
    event    JSON payload             MAX_EVENT_JSON_BYTES       sealed, it fits MAX_RECORD_BYTES

So a dead letter always fits: its value is at most `MAX_RECORD_BYTES` and its
headers and key are bounded by `MAX_DEAD_LETTER_META_BYTES`.
"""

from __future__ import annotations

__all__ = [
    "BROKER_MESSAGE_MAX_BYTES", "MAX_CODE_CHARS", "MAX_DEAD_LETTER_BYTES", "MAX_DEAD_LETTER_META_BYTES",
    "MAX_DETAIL_CHARS", "MAX_EVENT_JSON_BYTES", "MAX_HEADER_BYTES", "MAX_JSON_DEPTH", "MAX_ORIGIN_KEY_BYTES",
    "MAX_RECORD_BYTES", "MAX_TOPIC_CHARS", "PREFIX_BYTES", "PRODUCER_MAX_REQUEST_BYTES", "RECORD_OVERHEAD_BYTES",
]

BROKER_MESSAGE_MAX_BYTES = 1_048_588
"""The broker's ``message.max.bytes`` (Kafka's default, written explicitly into the local broker's properties)."""

PRODUCER_MAX_REQUEST_BYTES = 1_000_000
"""
Our producers' largest record (librdkafka ``message.max.bytes``, Faust ``producer_max_request_size``).

Below the broker's limit, so whatever our producers send the broker takes.
"""

RECORD_OVERHEAD_BYTES = 4096
"""Generous bound on Kafka's per-record framing (batch header, varints, header names) on top of key, value, headers."""

MAX_RECORD_BYTES = 524_288
"""
Largest record value a worker reads in full (an envelope, an audit fact, a directory entry).

Larger values are refused before any parsing (``too-large``).  Half the
producer's limit: a dead letter carrying such a value whole still fits with
room for its headers.  No event of ours comes near it (a sealed incident is
about 3 KB).
"""

MAX_EVENT_JSON_BYTES = 262_144
"""
Largest JSON payload the gateway (or any publisher) seals.

Sealing base64-encodes the ciphertext (4/3) and adds a header of about 1 KB,
so a payload of this size seals to well under `MAX_RECORD_BYTES`.
"""

MAX_JSON_DEPTH = 64
"""
Deepest nesting of arrays and objects accepted anywhere (our events nest 4-5 deep).

Checked by `safebus.bounded_json` without recursion, so ``[[[[…`` is a
reason code (``too-deep``), never a RecursionError.
"""

PREFIX_BYTES = 4096
"""How much of an oversized record a dead letter keeps, next to the digest of the whole."""

MAX_TOPIC_CHARS = 249
"""Kafka's own limit on a topic name (so an origin-topic header is bounded)."""

MAX_ORIGIN_KEY_BYTES = 500
"""How much of the refused record's key a dead letter copies."""

MAX_DETAIL_CHARS = 1000
"""A dead letter's detail (error locations and types only), in characters."""

MAX_CODE_CHARS = 100
"""A dead letter's stage and reason codes, in characters (the audit fact's ``Name`` fields hold as many)."""

MAX_HEADER_BYTES = 512
"""Any other header a dead letter copies (an event id, a digest), in bytes."""

MAX_DEAD_LETTER_META_BYTES = (
    4 * MAX_DETAIL_CHARS  # UTF-8: at most 4 bytes a character
    + 2 * MAX_TOPIC_CHARS * 4  # the origin topic, as a header and in the key
    + MAX_ORIGIN_KEY_BYTES
    + 2 * 4 * MAX_CODE_CHARS  # reason and stage
    + 12 * MAX_HEADER_BYTES  # partition, offset, id, event id, digest, length, truncated, header names, …
    + RECORD_OVERHEAD_BYTES
)
"""Every byte of a dead letter that is not its value: headers, key and framing."""

MAX_DEAD_LETTER_BYTES = MAX_RECORD_BYTES + MAX_DEAD_LETTER_META_BYTES
"""The largest dead letter there can be; below `PRODUCER_MAX_REQUEST_BYTES` (checked by a test)."""

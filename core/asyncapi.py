"""
The bus described as an AsyncAPI 3.0 document, generated from the topic and contract registries.

Channels are the channel templates `safebus topics apply` instantiates (an
``{agency}`` parameter stands for one topic per agency); messages are the
contracts.  On the wire every message is an envelope, so a message's payload
is the envelope schema and ``x-safebus-plaintext-schema`` points at the
contract the envelope carries once decrypted.  Operations say who sends and
who receives on each channel, from the bus's point of view.
"""

from __future__ import annotations

from typing import Any

from safebus.directory import SignedAgency
from safebus.envelope import ENVELOPE_JSON_SCHEMA
from safebus.limits import MAX_RECORD_BYTES, PREFIX_BYTES
from safebus.records import (
    DLQ_DETAIL,
    DLQ_ID,
    DLQ_ORIGIN_KEY,
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGIN_TOPIC,
    DLQ_ORIGINAL_BYTES,
    DLQ_ORIGINAL_SHA256,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TRUNCATED,
    EVENT_ID,
)
from safebus.schemas.registry import CONTRACTS
from safebus.topics import ChannelTemplate, TopicNames, channel_templates

__all__ = ["ASYNCAPI_VERSION", "DOCUMENT_VERSION", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
DOCUMENT_VERSION = "1.0.0"


def _camel(text: str) -> str:
    parts = text.replace(".", "-").split("-")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def _header_schema(names: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string"} for name in names}}


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {
        spec.event_type: {
            "name": spec.event_type,
            "title": spec.model.__name__,
            "summary": (spec.model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": _header_schema([EVENT_ID]),
            "payload": {"$ref": "#/components/schemas/envelope"},
            "x-safebus-plaintext-schema": {"$ref": f"json/{spec.event_type}/{spec.version}.json"},
            "x-safebus-compatibility": spec.compatibility.value,
        }
        for spec in CONTRACTS
    }
    messages["dead-letter"] = {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": ("A rejected record, kept byte for byte (a record over the bus's record limit: its first "
                    f"{PREFIX_BYTES} bytes and the SHA-256 of the whole), with why, where and at which stage it "
                    "was rejected, under an id derived from origin, stage and reason."),
        "contentType": "application/octet-stream",
        "headers": _header_schema([DLQ_ID, DLQ_REASON, DLQ_STAGE, DLQ_DETAIL, DLQ_ORIGIN_TOPIC, DLQ_ORIGIN_PARTITION,
                                   DLQ_ORIGIN_OFFSET, DLQ_ORIGIN_KEY, DLQ_ORIGINAL_SHA256, DLQ_ORIGINAL_BYTES,
                                   DLQ_TRUNCATED, EVENT_ID]),
        "payload": {"type": "string", "contentEncoding": "binary",
                    "description": (f"the original record value, or its first {PREFIX_BYTES} bytes when it was "
                                    f"larger than {MAX_RECORD_BYTES} bytes (then safebus.dlq.truncated is true)")},
    }
    messages["agency-entry"] = {
        "name": "agency-entry",
        "title": "Signed agency-directory entry",
        "summary": "An agency's keys (by generation and status) and contacts, signed by the partnership root key.",
        "contentType": "application/json",
        "payload": SignedAgency.model_json_schema(),
    }
    messages["state-change"] = {
        "name": "state-change",
        "title": "Router state change",
        "summary": "A key's whole router state after one change (idempotent, in the total order of ADR 0008), "
                   "keyed for compaction; format 1 records are still read.",
        "contentType": "application/json",
        "payload": {"type": "object", "required": ["format", "op"],
                    "properties": {"format": {"enum": ["safebus-router-state/2", "safebus-router-state/1"]},
                                   "op": {"enum": ["incident", "marac", "enrolment", "consent"]}}},
    }
    messages["checkpoint"] = {
        "name": "checkpoint",
        "title": "Signed audit-log checkpoint",
        "summary": "A C2SP tlog-checkpoint (origin, tree size, root hash) in a signed note, by the audit log's key.",
        "contentType": "text/plain",
        "payload": {"type": "string", "description": "the signed note, UTF-8"},
    }
    return messages


def _channel(template: ChannelTemplate) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": template.address,
        "title": template.key,
        "description": template.description,
        "messages": {_camel(m): {"$ref": f"#/components/messages/{m}"} for m in template.messages},
        "bindings": {"kafka": {
            "partitions": template.partitions,
            "topicConfiguration": {
                "cleanup.policy": [template.config["cleanup.policy"]],
                "retention.ms": int(template.config["retention.ms"]),
            },
            "bindingVersion": "0.5.0",
        }},
    }
    if template.per_agency:
        kinds = ", ".join(sorted(k.value for k in template.per_agency))
        channel["parameters"] = {"agency": {"description": f"Directory id of the agency ({kinds})"}}
    return channel


def _operations(templates: list[ChannelTemplate]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for template in templates:
        channel_ref = {"$ref": f"#/channels/{_camel(template.key)}"}
        for action, parties in (("send", template.publishers), ("receive", template.subscribers)):
            for party in parties:
                operations[_camel(f"{party}-{action}s-{template.key}")] = {
                    "action": action,
                    "channel": channel_ref,
                    "summary": f"{party} {action}s on {template.address}",
                    "x-safebus-party": party,
                }
    return operations


def asyncapi_document(names: TopicNames | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus with topic prefix `names.prefix`."""
    templates = channel_templates(names or TopicNames())
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "safebus",
            "version": DOCUMENT_VERSION,
            "description": "Information sharing for domestic-abuse safeguarding partnerships. Every message is "
                           "a signed, encrypted envelope; topic names use the prefix 'safebus' by default.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:{port}",
                "protocol": "kafka",
                "description": "The single-node broker of 'safebus broker up' (port chosen at start-up)",
                "variables": {"port": {"description": "see 'safebus broker status'"}},
            },
        },
        "channels": {_camel(t.key): _channel(t) for t in templates},
        "operations": _operations(templates),
        "components": {
            "messages": _messages(),
            "schemas": {"envelope": ENVELOPE_JSON_SCHEMA},
        },
    }

"""The AsyncAPI document lists every topic and message, and agrees with 'safebus topics apply'."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safebus.asyncapi import asyncapi_document
from safebus.schemas.registry import CONTRACTS
from safebus.topics import TopicNames, bus_topics
from tests.conftest import Partnership

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def _address_pattern(address: str) -> re.Pattern[str]:
    return re.compile(re.escape(address).replace(re.escape("{agency}"), "[a-z0-9][a-z0-9-]*") + r"\Z")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_applied_topic_is_exactly_one_documented_channel(partnership: Partnership) -> None:
    """Each topic 'topics apply' creates matches one channel, with the same partitions and retention."""
    document = asyncapi_document()
    channels = document["channels"]
    for spec in bus_topics(partnership.directory, TopicNames()):
        matches = [c for c in channels.values() if _address_pattern(c["address"]).match(spec.name)]
        assert len(matches) == 1, spec.name
        binding = matches[0]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions
        assert binding["topicConfiguration"]["retention.ms"] == int(spec.config["retention.ms"])
        assert binding["topicConfiguration"]["cleanup.policy"] == [spec.config["cleanup.policy"]]


def test_every_documented_channel_is_a_real_topic(partnership: Partnership) -> None:
    """No channel is documented that the partnership would not create."""
    names = [spec.name for spec in bus_topics(partnership.directory, TopicNames())]
    for key, channel in asyncapi_document()["channels"].items():
        assert any(_address_pattern(channel["address"]).match(name) for name in names), key


def test_every_contract_is_a_message_on_a_channel_with_its_schema() -> None:
    """Each contract appears as a message on some channel and points at its published schema file."""
    document = asyncapi_document()
    on_channels = {
        ref["$ref"].rsplit("/", 1)[1] for c in document["channels"].values() for ref in c["messages"].values()
    }
    for spec in CONTRACTS:
        assert spec.event_type in on_channels
        message = document["components"]["messages"][spec.event_type]
        assert (SCHEMAS / message["x-safebus-plaintext-schema"]["$ref"]).exists()
        assert _resolve(document, message["payload"]["$ref"])["title"] == "safebus envelope"


def test_every_operation_names_a_party_and_a_real_channel() -> None:
    """Operations say who sends and who receives, on channels that exist."""
    document = asyncapi_document()
    parties = {(op["x-safebus-party"], op["action"]) for op in document["operations"].values()}
    assert ("police", "send") in parties
    assert ("router", "receive") in parties
    assert ("school", "receive") in parties
    for operation in document["operations"].values():
        assert operation["action"] in {"send", "receive"}
        assert _resolve(document, operation["channel"]["$ref"])["address"]


def test_committed_document_is_the_generated_one() -> None:
    """The committed asyncapi.json is what the registries generate today."""
    committed = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(asyncapi_document()))
    assert committed["asyncapi"] == "3.0.0"

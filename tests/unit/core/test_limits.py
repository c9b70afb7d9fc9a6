"""The bus's limits agree with each other, with our producers and with the broker, so a dead letter always fits."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from bench.fuzz_harness import output_size
from safebus.bounded_json import JsonRefused, loads
from safebus.deploy.broker import _server_properties
from safebus.envelope import MAX_ENVELOPE_BYTES, seal
from safebus.kafka_io import reliable_producer
from safebus.limits import (
    BROKER_MESSAGE_MAX_BYTES,
    MAX_DEAD_LETTER_BYTES,
    MAX_EVENT_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_RECORD_BYTES,
    PREFIX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    RECORD_OVERHEAD_BYTES,
)
from safebus.processors.app import create_app
from safebus.producers.gateway import MAX_BODY_BYTES
from safebus.records import DLQ_ORIGINAL_BYTES, DLQ_ORIGINAL_SHA256, DLQ_TRUNCATED, Origin, dead_letter
from tests.conftest import FIXED_NOW, Partnership


def test_each_limit_sits_inside_the_one_outside_it() -> None:
    """Event < record < dead letter < producer request < broker message: each step has room for the next."""
    assert MAX_EVENT_JSON_BYTES < MAX_RECORD_BYTES
    assert MAX_RECORD_BYTES < MAX_DEAD_LETTER_BYTES <= PRODUCER_MAX_REQUEST_BYTES - RECORD_OVERHEAD_BYTES
    assert PRODUCER_MAX_REQUEST_BYTES < BROKER_MESSAGE_MAX_BYTES
    assert PREFIX_BYTES < MAX_RECORD_BYTES


def test_the_worst_dead_letter_there_can_be_fits_the_producer() -> None:
    """The largest value kept whole, with every header at its longest in 4-byte characters, is within the bound."""
    worst = dead_letter(raw=b"[" * MAX_RECORD_BYTES, origin=Origin(topic="\U0001f600" * 400, partition=2**31 - 1,
                                                                   offset=2**63 - 1, key=b"k" * 100_000),
                        stage="\U0001f600" * 5000, reason="\U0001f600" * 5000, detail="\U0001f600" * 5000,
                        topic="t.deadletter")
    assert len(worst.value) == MAX_RECORD_BYTES
    assert output_size(worst) <= MAX_DEAD_LETTER_BYTES - RECORD_OVERHEAD_BYTES


@pytest.mark.parametrize("size", [MAX_RECORD_BYTES + 1, 1_000_000, 1_048_576, BROKER_MESSAGE_MAX_BYTES])
def test_an_oversized_record_is_dead_lettered_as_digest_prefix_and_coordinates(size: int) -> None:
    """Above the record limit the dead letter keeps the first bytes, the whole record's SHA-256 and its length."""
    raw = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    letter = dead_letter(raw=raw, origin=Origin(topic="t.ingress.p.da-incident", partition=1, offset=7),
                         stage="verify", reason="too-large", detail="", topic="t.deadletter")
    headers = dict(letter.headers)
    assert letter.value == raw[:PREFIX_BYTES]
    assert headers[DLQ_TRUNCATED] == b"true"
    assert headers[DLQ_ORIGINAL_SHA256].decode() == hashlib.sha256(raw).hexdigest()
    assert headers[DLQ_ORIGINAL_BYTES] == str(size).encode()
    assert output_size(letter) < PREFIX_BYTES + 2000


def test_our_producer_takes_the_largest_dead_letter_and_refuses_past_its_limit() -> None:
    """librdkafka, as `reliable_producer` configures it, takes a worst-case dead letter and refuses past the limit."""
    producer = reliable_producer("127.0.0.1:1").client
    worst = dead_letter(raw=b"[" * MAX_RECORD_BYTES, origin=Origin(topic="t" * 249, partition=0, offset=0,
                                                                   key=b"k" * 600),
                        stage="verify", reason="malformed", detail="d" * 5000, topic="t.deadletter")
    producer.produce(worst.topic, key=worst.key, value=worst.value, headers=list(worst.headers))
    with pytest.raises(KafkaException) as refused:
        producer.produce("t.deadletter", value=b"x" * (PRODUCER_MAX_REQUEST_BYTES + 1))
    assert refused.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    producer.purge()


def test_the_router_and_the_broker_are_configured_with_the_same_limits(tmp_path: Path) -> None:
    """The Faust producer's maximum request and the brokers' (local, Docker) message.max.bytes are the stated ones."""
    app = create_app(bootstrap="127.0.0.1:1", handler=None, ingress_topics=lambda: ["t"], datadir=tmp_path)  # type: ignore[arg-type]
    assert app.conf.producer_max_request_size == PRODUCER_MAX_REQUEST_BYTES
    text = _server_properties(port=1, controller_port=2, data=tmp_path)
    settings = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(settings["message.max.bytes"]) == BROKER_MESSAGE_MAX_BYTES
    compose = (Path(__file__).resolve().parents[3] / "deploy" / "compose.yaml").read_text()
    assert f'KAFKA_MESSAGE_MAX_BYTES: "{BROKER_MESSAGE_MAX_BYTES}"' in compose


def test_the_largest_event_the_gateway_takes_seals_within_the_record_limit(partnership: Partnership) -> None:
    """A payload of the gateway's maximum body, sealed for the router with many subject keys, is a readable record."""
    assert MAX_BODY_BYTES == MAX_EVENT_JSON_BYTES
    assert MAX_ENVELOPE_BYTES == MAX_RECORD_BYTES
    payload = json.dumps({"narrative": "\U0001f600" * (MAX_EVENT_JSON_BYTES // 4 - 10)}, ensure_ascii=False).encode()
    assert MAX_EVENT_JSON_BYTES - 100 <= len(payload) <= MAX_EVENT_JSON_BYTES
    envelope = seal(payload, sender=partnership.police, recipient=partnership.router.public(),
                    event_id=str(uuid.uuid4()), event_type="police.domestic-abuse-incident" + "x" * 200,
                    schema_id="s" * 300, schema_version="1.0.0", topic="t" * 249, now=FIXED_NOW)
    assert len(envelope) <= MAX_RECORD_BYTES


def test_json_as_deep_as_the_limit_parses_and_one_level_more_is_refused_without_recursion() -> None:
    """`MAX_JSON_DEPTH` is below the parser's own recursion limit, and far deeper input is a reason code."""
    assert loads(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    for deeper in (MAX_JSON_DEPTH + 1, 1000, 200_000):
        with pytest.raises(JsonRefused) as refused:
            loads(b"[" * deeper + b"]" * deeper)
        assert refused.value.reason == "too-deep"

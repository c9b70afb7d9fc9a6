"""The contracts stand without our code: a non-Python Kafka client carries an example through the broker."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from safebus.schemas.validation import validate_payload
from tests.integration.conftest import Broker

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "police.domestic-abuse-incident.json"


def test_kcat_round_trips_an_example_that_still_validates(kafka: Broker) -> None:
    """kcat (librdkafka's C CLI) produces and consumes an example payload; it arrives byte for byte and valid."""
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed: 'make test' installs it (Debian package kcat)")
    topic = f"contracts-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    payload = json.dumps(json.loads(EXAMPLE.read_text()), separators=(",", ":"))

    subprocess.run([kcat, "-b", kafka.bootstrap, "-t", topic, "-P", "-k", "example"], input=payload + "\n",
                   text=True, check=True, timeout=60)
    consumed = subprocess.run([kcat, "-b", kafka.bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-c", "1",
                               "-f", "%k\t%s\n"], capture_output=True, text=True, check=True, timeout=60).stdout

    key, value = consumed.rstrip("\n").split("\t", 1)
    assert key == "example"
    assert value == payload
    assert validate_payload(json.loads(value)) == []

"""The contracts stand without our code: a non-Python Kafka client carries an example through the broker."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from safebus.kafka_security import client_config, current_security
from safebus.schemas.validation import validate_payload
from tests.integration.conftest import Broker

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "police.domestic-abuse-incident.json"


def test_kcat_round_trips_an_example_that_still_validates(kafka: Broker, tmp_path: Path) -> None:
    """kcat (librdkafka's C CLI) produces and consumes an example payload; it arrives byte for byte and valid."""
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed: 'make test' installs it (Debian package kcat)")
    topic = f"contracts-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(kafka.bootstrap))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    payload = json.dumps(json.loads(EXAMPLE.read_text()), separators=(",", ":"))

    # Settings in a 0600 file, never on a command line.  On the secured cluster kcat proves itself with a
    # certificate (mutual TLS, as User:admin): Debian's kcat links librdkafka 2.0, whose SCRAM proof Kafka 4
    # rejects (fixed in librdkafka 2.6.1), as a partner's older client would.
    security, bootstrap = current_security(), kafka.bootstrap
    if kafka.cluster is not None:
        security, bootstrap = kafka.cluster.certificate_security("admin"), kafka.cluster.mtls_bootstrap
    config = tmp_path / "kcat.conf"
    config.touch(mode=0o600)
    config.write_text("".join(f"{key}={value}\n" for key, value in security.librdkafka().items()))
    subprocess.run([kcat, "-b", bootstrap, "-F", str(config), "-t", topic, "-P", "-k", "example"],
                   input=payload + "\n", text=True, check=True, timeout=60)
    consumed = subprocess.run([kcat, "-b", bootstrap, "-F", str(config), "-t", topic, "-C", "-o", "beginning", "-e",
                               "-c", "1", "-f", "%k\t%s\n"],
                              capture_output=True, text=True, check=True, timeout=60).stdout

    key, value = consumed.rstrip("\n").split("\t", 1)
    assert key == "example"
    assert value == payload
    assert validate_payload(json.loads(value)) == []

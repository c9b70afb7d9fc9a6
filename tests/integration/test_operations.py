"""Operating the bus: the broker command, topics as code, and the demo, on a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from safebus.app.wiring import Settings, topics_for
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.kafka_security import client_config
from safebus.producers.synthetic import create_partnership
from safebus.topics import TopicNames
from tests.integration.conftest import Broker, plaintext_environment, wait_for

pytestmark = pytest.mark.kafka


def _safebus(*argv: str, state: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safebus", *argv], env={**os.environ, "SAFEBUS_HOME": str(state)},
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_broker_up_is_idempotent_and_down_stops_it(tmp_path: Path) -> None:
    """'broker up' twice reuses the running broker; 'status' reports it; 'down' stops it."""
    with plaintext_environment():  # the single node of 'make demo', whatever the session's broker
        try:
            first = _safebus("broker", "up", state=tmp_path)
            assert first.returncode == 0, first.stderr
            assert first.stdout.startswith("running pid=")
            second = _safebus("broker", "up", state=tmp_path)
            assert second.stdout == first.stdout
            status = _safebus("broker", "status", state=tmp_path)
            assert status.returncode == 0
            assert status.stdout == first.stdout
            assert (tmp_path / "broker" / "data" / "meta.properties").exists()
        finally:
            down = _safebus("broker", "down", state=tmp_path)
        assert down.returncode == 0
        assert down.stdout.startswith("stopped")
        after = _safebus("broker", "status", state=tmp_path)
        assert after.returncode == 3
        assert after.stdout.startswith("stopped")


def test_topics_apply_is_safe_to_rerun_and_corrects_drift(kafka: Broker, tmp_path: Path) -> None:
    """The first apply creates every topic, a rerun changes nothing, and a drifted setting is restored."""
    store = PartnershipStore(tmp_path)
    create_partnership(store)
    names = TopicNames(prefix=f"a{uuid.uuid4().hex[:8]}")
    settings = Settings(state_dir=tmp_path, bootstrap=kafka.bootstrap, names=names)
    specs = topics_for(settings)
    assert {c.action for c in apply_topics(kafka.bootstrap, specs)} == {"created"}
    assert {c.action for c in apply_topics(kafka.bootstrap, specs)} == {"unchanged"}

    audit = next(s for s in specs if s.name == settings.names.audit)
    drifted = [s if s is not audit else type(s)(name=s.name, role=s.role, partitions=s.partitions,
                                                  config={**s.config, "retention.ms": "1000"}) for s in specs]
    apply_topics(kafka.bootstrap, drifted)
    admin = AdminClient(client_config(kafka.bootstrap))
    resource = ConfigResource(ConfigResource.Type.TOPIC, audit.name)

    def retention() -> str:
        return str(admin.describe_configs([resource])[resource].result(10)["retention.ms"].value)

    wait_for(lambda: retention() == "1000", timeout_s=30, what="the drifted setting to be visible")
    changes = {c.name: c.action for c in apply_topics(kafka.bootstrap, specs)}
    assert changes[audit.name] == "updated"
    wait_for(lambda: retention() == "-1", timeout_s=30, what="the restored setting")


def test_broker_never_auto_creates_topics(kafka: Broker) -> None:
    """A typo in a topic name fails delivery instead of silently creating a topic."""
    if not kafka.local:
        pytest.skip("auto-creation is a property of the project's own broker configuration")
    typo = f"typo-{uuid.uuid4().hex}"
    producer = Producer({**client_config(kafka.bootstrap), "message.timeout.ms": 3000})
    errors: list[KafkaError | None] = []
    producer.produce(typo, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    [error] = errors
    assert error is not None
    assert typo not in AdminClient(client_config(kafka.bootstrap)).list_topics(timeout=10).topics


def test_demo_runs_end_to_end(kafka: Broker, tmp_path: Path) -> None:
    """'safebus demo' completes on the broker and reports schools, withholdings and dead letters."""
    result = _safebus("--prefix", f"d{uuid.uuid4().hex[:8]}", "demo", "--bootstrap", kafka.bootstrap,
                      "--incidents", "12", "--seed", "5", "--timeout", "150", state=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "== What each school received" in out
    assert "== Every decision, by agreement and clause" in out
    assert "operation-encompass v2.2.0 clause 4.1 notify-setting: shared" in out
    for reason in ("bad-signature", "malformed", "unknown-sender", "wrong-recipient", "schema-violation"):
        assert f"reason={reason} " in out
    assert "complete:" in out

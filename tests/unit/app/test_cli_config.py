"""``safebus config check``: an operator sees what every worker will use, never a secret, or the wrong variable."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from safebus.app.cli_config import check
from safebus.topics import TopicNames

_SECRET = "synthetic-kafka-secret-7Q"


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAFEBUS_KAFKA_SECURITY_PROTOCOL", "SAFEBUS_KAFKA_SASL_MECHANISM", "SAFEBUS_KAFKA_USERNAME",
                 "SAFEBUS_KAFKA_PASSWORD_FILE", "SAFEBUS_KAFKA_CA_FILE", "SAFEBUS_KAFKA_CERT_FILE",
                 "SAFEBUS_KAFKA_KEY_FILE", "SAFEBUS_SMTP", "SAFEBUS_SMTP_SECURITY", "SAFEBUS_SMTP_USER",
                 "SAFEBUS_SMTP_PASSWORD_FILE", "SAFEBUS_SMTP_CA", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)


def test_a_secured_identity_is_shown_with_its_password_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    password = tmp_path / "kafka.password"
    password.write_text(_SECRET)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SAFEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SAFEBUS_KAFKA_USERNAME", "router")
    monkeypatch.setenv("SAFEBUS_KAFKA_PASSWORD_FILE", str(password))
    monkeypatch.setenv("SAFEBUS_KAFKA_CA_FILE", str(ca))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    out = io.StringIO()

    assert check(tmp_path, TopicNames(prefix="cfgtest"), out, io.StringIO()) == 0

    lines = dict(line.split(None, 1) for line in out.getvalue().splitlines())
    assert lines["kafka.security_protocol"] == "SASL_SSL"
    assert lines["kafka.username"] == "router"
    assert lines["kafka.password"] == "****"
    assert lines["kafka.bootstrap"] == "127.0.0.1:29092"
    assert lines["topic_prefix"] == "cfgtest"
    assert _SECRET not in out.getvalue()


def test_a_wrong_protocol_is_refused_naming_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("SAFEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT_PLEASE")
    out, err = io.StringIO(), io.StringIO()

    assert check(tmp_path, TopicNames(prefix="cfgtest"), out, err) == 2

    assert out.getvalue() == ""
    assert err.getvalue().startswith("safebus: configuration refused:")
    assert "SAFEBUS_KAFKA_SECURITY_PROTOCOL" in err.getvalue()


def test_a_bad_relay_address_is_refused_naming_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("SAFEBUS_SMTP", "no-port-here")
    err = io.StringIO()

    assert check(tmp_path, TopicNames(prefix="cfgtest"), io.StringIO(), err) == 2

    assert "SAFEBUS_SMTP" in err.getvalue()


def test_with_a_credentials_directory_each_worker_is_shown_as_its_own_principal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``safebus up`` will run each worker as, checked before it runs: a missing password file is named."""
    _clear(monkeypatch)
    password = tmp_path / "admin.password"
    password.write_text(_SECRET)
    monkeypatch.setenv("SAFEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SAFEBUS_KAFKA_USERNAME", "admin")
    monkeypatch.setenv("SAFEBUS_KAFKA_PASSWORD_FILE", str(password))
    components = tmp_path / "components"
    components.mkdir()
    for principal in ("router", "inbox", "queues", "sequencer", "monitor"):
        (components / f"{principal}.password").write_text(_SECRET)
    monkeypatch.setenv("SAFEBUS_KAFKA_CREDENTIALS_DIR", str(components))

    err = io.StringIO()
    assert check(tmp_path, TopicNames(prefix="cfgtest"), io.StringIO(), err) == 2
    assert "no password file for component 'gateway'" in err.getvalue()

    (components / "gateway.password").write_text(_SECRET)
    out = io.StringIO()
    assert check(tmp_path, TopicNames(prefix="cfgtest"), out, io.StringIO()) == 0
    lines = dict(line.split(None, 1) for line in out.getvalue().splitlines())
    assert "processor=router" in lines["kafka.components"]
    assert "inbox=inbox" in lines["kafka.components"]
    assert _SECRET not in out.getvalue()


def test_the_health_ports_up_hands_out_are_shown_and_a_bad_base_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervised workers' scrape targets, from SAFEBUS_HEALTH_PORT_BASE; a wrong value names the variable."""
    monkeypatch.setenv("SAFEBUS_HEALTH_PORT_BASE", "9400")
    out = io.StringIO()
    assert check(tmp_path, TopicNames(prefix="cfgtest"), out, io.StringIO()) == 0
    assert "processor 9400, inbox 9401" in out.getvalue()
    monkeypatch.setenv("SAFEBUS_HEALTH_PORT_BASE", "ninety")
    err = io.StringIO()
    assert check(tmp_path, TopicNames(prefix="cfgtest"), io.StringIO(), err) == 2
    assert "SAFEBUS_HEALTH_PORT_BASE" in err.getvalue()

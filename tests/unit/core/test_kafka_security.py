"""A component's Kafka identity: refused with the setting's name when wrong, never shown with its password."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus import kafka_security
from safebus.errors import ConfigError
from safebus.kafka_security import KafkaSecurity, SecurityProtocol, client_config, load_security


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    password = tmp_path / "router.password"
    password.write_text("s3cret-synthetic\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {"password": str(password), "ca": str(ca)}


def _sasl(files: dict[str, str], **more: str) -> dict[str, str]:
    return {"SAFEBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SAFEBUS_KAFKA_USERNAME": "router",
            "SAFEBUS_KAFKA_PASSWORD_FILE": files["password"], "SAFEBUS_KAFKA_CA_FILE": files["ca"], **more}


def test_nothing_set_is_the_local_plaintext_broker() -> None:
    security = load_security({})
    assert security.security_protocol is SecurityProtocol.PLAINTEXT
    assert security.librdkafka() == {"security.protocol": "PLAINTEXT"}


def test_scram_over_tls_gives_librdkafka_the_principal_the_password_and_the_ca(files: dict[str, str]) -> None:
    config = load_security(_sasl(files)).librdkafka()
    assert config == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "router",
                      "sasl.password": "s3cret-synthetic", "ssl.ca.location": files["ca"],
                      "ssl.endpoint.identification.algorithm": "https"}


def test_describe_masks_the_password(files: dict[str, str]) -> None:
    shown = load_security(_sasl(files)).describe()
    assert shown["password"] == "****"
    assert "s3cret-synthetic" not in repr(shown)


@pytest.mark.parametrize(("change", "named"), [
    ({"SAFEBUS_KAFKA_SECURITY_PROTOCOL": "SASL"}, "SAFEBUS_KAFKA_SECURITY_PROTOCOL"),
    ({"SAFEBUS_KAFKA_PASSWORD_FILE": "/nonexistent/router.password"}, "SAFEBUS_KAFKA_PASSWORD_FILE"),
    ({"SAFEBUS_KAFKA_SASL_MECHANISM": "PLAIN"}, "SAFEBUS_KAFKA_SASL_MECHANISM"),
    ({"SAFEBUS_KAFKA_USERNAME": "router;drop"}, "SAFEBUS_KAFKA_USERNAME"),
    ({"SAFEBUS_KAFKA_CERT_FILE": "/etc/hostname"}, "SAFEBUS_KAFKA_KEY_FILE"),
])
def test_a_bad_value_is_refused_with_the_settings_name(files: dict[str, str], change: dict[str, str],
                                                       named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_security(_sasl(files, **change))


def test_a_password_is_never_sent_without_sasl_over_tls(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="only over SASL_SSL"):
        load_security({"SAFEBUS_KAFKA_USERNAME": "router", "SAFEBUS_KAFKA_PASSWORD_FILE": files["password"]})


def test_every_client_of_the_process_gets_the_identity_in_use(files: dict[str, str]) -> None:
    kafka_security.use(load_security(_sasl(files)))
    try:
        config = client_config("127.0.0.1:9093", **{"group.id": "g"})
    finally:
        kafka_security.use(None)
    assert config["bootstrap.servers"] == "127.0.0.1:9093"
    assert config["sasl.username"] == "router"
    assert config["group.id"] == "g"


def test_the_environment_is_read_when_nothing_was_given(files: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _sasl(files).items():
        monkeypatch.setenv(name, value)
    kafka_security.use(None)
    try:
        assert kafka_security.current_security() == KafkaSecurity.model_validate(
            {"security_protocol": "SASL_SSL", "username": "router", "password_file": files["password"],
             "ca_file": files["ca"]})
    finally:
        kafka_security.use(None)


def test_each_component_gets_its_own_principal_from_the_credentials_directory(tmp_path: Path) -> None:
    """``safebus up`` gives the router the router's name and password file, not the operator's."""
    (tmp_path / "router.password").write_text("synthetic-router-password\n")
    env = {"SAFEBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SAFEBUS_KAFKA_USERNAME": "admin",
           kafka_security.CREDENTIALS_DIR: str(tmp_path)}
    assert kafka_security.component_environment("router", env) == {
        "SAFEBUS_KAFKA_USERNAME": "router", "SAFEBUS_KAFKA_PASSWORD_FILE": str(tmp_path / "router.password")}
    assert kafka_security.component_environment("router", {"SAFEBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}) == {}


@pytest.mark.parametrize(("protocol", "component", "expected"), [
    ("SASL_SSL", "inbox", "no password file for component 'inbox'"),
    ("PLAINTEXT", "router", "sent only over SASL_SSL"),
])
def test_a_credentials_directory_that_cannot_serve_a_component_is_refused_by_name(
        tmp_path: Path, protocol: str, component: str, expected: str) -> None:
    (tmp_path / "router.password").write_text("synthetic-router-password\n")
    env = {"SAFEBUS_KAFKA_SECURITY_PROTOCOL": protocol, kafka_security.CREDENTIALS_DIR: str(tmp_path)}
    with pytest.raises(ConfigError, match=expected) as refused:
        kafka_security.component_environment(component, env)
    assert kafka_security.CREDENTIALS_DIR in str(refused.value)

"""The relay a worker e-mails through, as the environment configures it."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus.app.encompass_wiring import mail_for, mail_relay
from safebus.app.wiring import Settings
from safebus.consumers.mail.relay import SmtpSecurity
from safebus.errors import ConfigError
from safebus.topics import TopicNames

_VARIABLES = ("SAFEBUS_SMTP", "SAFEBUS_SMTP_SECURITY", "SAFEBUS_SMTP_USER", "SAFEBUS_SMTP_PASSWORD_FILE",
              "SAFEBUS_SMTP_CA")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_no_relay_means_no_mail(tmp_path: Path) -> None:
    """Without SAFEBUS_SMTP nobody is e-mailed (escalation steps are still audited)."""
    assert mail_relay() is None
    assert mail_for(Settings(state_dir=tmp_path, bootstrap="", names=TopicNames()), "inbox") is None


def test_a_relay_on_loopback_is_plain_and_any_other_starts_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safe default: only a relay on this machine is spoken to in clear."""
    monkeypatch.setenv("SAFEBUS_SMTP", "127.0.0.1:2525")
    relay = mail_relay()
    assert relay is not None
    assert relay.security is SmtpSecurity.NONE
    monkeypatch.setenv("SAFEBUS_SMTP", "relay.northdale.example:587")
    relay = mail_relay()
    assert relay is not None
    assert (relay.host, relay.port, relay.security) == (
        "relay.northdale.example", 587, SmtpSecurity.STARTTLS)


def test_a_login_reads_its_password_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The password is not in the environment every child process inherits."""
    secret = tmp_path / "smtp-password"
    secret.write_text("synthetic-relay-password\n")
    monkeypatch.setenv("SAFEBUS_SMTP", "relay.northdale.example:465")
    monkeypatch.setenv("SAFEBUS_SMTP_SECURITY", "tls")
    monkeypatch.setenv("SAFEBUS_SMTP_USER", "encompass-alerts")
    monkeypatch.setenv("SAFEBUS_SMTP_PASSWORD_FILE", str(secret))
    relay = mail_relay()
    assert relay is not None
    assert (relay.security, relay.username, relay.password) == (SmtpSecurity.TLS, "encompass-alerts",
                                                                "synthetic-relay-password")


@pytest.mark.parametrize(("variables", "named"), [
    ({"SAFEBUS_SMTP": "relay.example:587", "SAFEBUS_SMTP_SECURITY": "ssl"}, "SAFEBUS_SMTP_SECURITY='ssl'"),
    ({"SAFEBUS_SMTP": "relay.example"}, "SAFEBUS_SMTP='relay.example'"),
    ({"SAFEBUS_SMTP": "127.0.0.1:25", "SAFEBUS_SMTP_USER": "u", "SAFEBUS_SMTP_PASSWORD_FILE": "/dev/null"},
     "only sent over TLS"),
], ids=["unknown-security", "no-port", "login-in-clear"])
def test_a_bad_setting_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
                                                named: str) -> None:
    """The worker refuses to start and says which setting is wrong."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        mail_relay()

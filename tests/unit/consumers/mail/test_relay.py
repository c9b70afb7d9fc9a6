"""Reaching the relay securely: STARTTLS, implicit TLS and a login, against a real TLS relay on loopback."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from safebus.consumers.mail.relay import SmtpRelay, SmtpSecurity
from safebus.errors import ConfigError
from tests.mail_relay import Recorder, free_port, start_relay
from tests.tls_files import self_signed_certificate

LOGIN = ("encompass-alerts", "synthetic-relay-password")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """The relay's certificate (its own CA) and a server context holding it."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "encompass-alerts@northdale.example"
    message["To"] = "dsl@school-900101.example"
    message["Subject"] = "Operation Encompass: a new alert is waiting"
    message.set_content("A new Operation Encompass alert is waiting.\n")
    return message


@pytest.fixture
def starttls_relay(certificate: tuple[Path, ssl.SSLContext]) -> Iterator[tuple[Recorder, int]]:
    """A relay that requires STARTTLS and then a login."""
    recorder, port = Recorder(), free_port()
    controller = start_relay(recorder, port, starttls=certificate[1], login=LOGIN)
    yield recorder, port
    controller.stop()


def test_starttls_and_login_deliver(starttls_relay: tuple[Recorder, int], certificate: tuple[Path, ssl.SSLContext]
                                    ) -> None:
    """Port-587 style: upgraded before anything is sent, the CA file trusted, then logged in."""
    recorder, port = starttls_relay
    relay = SmtpRelay(host="127.0.0.1", port=port, security=SmtpSecurity.STARTTLS, username=LOGIN[0],
                      password=LOGIN[1], ca_file=certificate[0], timeout_s=5)
    with relay.connect() as smtp:
        smtp.send_message(_message())
    assert [r.rcpt_tos for r in recorder.received] == [["dsl@school-900101.example"]]


def test_a_wrong_password_is_refused(starttls_relay: tuple[Recorder, int], certificate: tuple[Path, ssl.SSLContext]
                                     ) -> None:
    """The relay's answer reaches the caller (the sender defers and logs it)."""
    _, port = starttls_relay
    relay = SmtpRelay(host="127.0.0.1", port=port, security=SmtpSecurity.STARTTLS, username=LOGIN[0],
                      password="not-the-password", ca_file=certificate[0], timeout_s=5)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        relay.connect()


def test_a_relay_whose_certificate_cannot_be_verified_gets_nothing(starttls_relay: tuple[Recorder, int]) -> None:
    """Without the CA that signed it, the relay cannot prove who it is: no login, no mail."""
    recorder, port = starttls_relay
    relay = SmtpRelay(host="127.0.0.1", port=port, security=SmtpSecurity.STARTTLS, username=LOGIN[0],
                      password=LOGIN[1], timeout_s=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        relay.connect()
    assert recorder.received == []


def test_implicit_tls_delivers(certificate: tuple[Path, ssl.SSLContext]) -> None:
    """Port-465 style (RFC 8314): TLS from the first byte."""
    recorder, port = Recorder(), free_port()
    controller = start_relay(recorder, port, implicit_tls=certificate[1])
    try:
        relay = SmtpRelay(host="127.0.0.1", port=port, security=SmtpSecurity.TLS, ca_file=certificate[0],
                          timeout_s=5)
        with relay.connect() as smtp:
            smtp.send_message(_message())
    finally:
        controller.stop()
    assert len(recorder.received) == 1


def test_a_relay_without_starttls_is_not_used_in_clear(smtp: tuple[Recorder, int]) -> None:
    """Asked for STARTTLS, a relay that does not offer it is an error, not a silent downgrade."""
    recorder, port = smtp
    with pytest.raises(smtplib.SMTPNotSupportedError):
        SmtpRelay(host="127.0.0.1", port=port, security=SmtpSecurity.STARTTLS, timeout_s=5).connect()
    assert recorder.received == []


@pytest.mark.parametrize(("settings", "error"), [
    ({"security": SmtpSecurity.NONE, "username": "u", "password": "p"}, "only sent over TLS"),
    ({"security": SmtpSecurity.STARTTLS, "username": "u"}, "both a user name and a password"),
    ({"port": 0}, "not a TCP port"),
    ({"ca_file": Path("/nonexistent/ca.pem")}, "does not exist"),
], ids=["login-in-clear", "user-without-password", "bad-port", "missing-ca"])
def test_settings_that_cannot_work_are_refused_when_made(settings: dict[str, object], error: str) -> None:
    """A misconfigured relay fails at start-up with what is wrong, not at the first alert."""
    with pytest.raises(ConfigError, match=error):
        SmtpRelay(**{"host": "127.0.0.1", "port": 587, **settings})  # type: ignore[arg-type]


def test_the_password_is_not_in_its_repr() -> None:
    """Settings are logged and printed; the password never is."""
    relay = SmtpRelay(host="relay.example", port=587, security=SmtpSecurity.STARTTLS, username=LOGIN[0],
                      password=LOGIN[1])
    assert LOGIN[1] not in repr(relay)

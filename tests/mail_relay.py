"""A real SMTP relay on loopback for tests (aiosmtpd), and a notifier that delivers through it at once."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from safebus.consumers.inbox.email_notice import EmailNotifier
from safebus.consumers.mail.outbox import MailOutbox
from safebus.consumers.mail.relay import SmtpRelay
from safebus.consumers.mail.sender import OutboxSender

__all__ = ["LoopbackRelay", "Received", "Recorder", "SendingNotifier", "free_port", "smtp", "start_relay"]


@dataclass
class Received:
    """What the loopback SMTP server was given."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class Recorder:
    """The relay's handler: records every message, refuses the addresses in `refuse` (550) and greylists `defer`."""

    refuse: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    """Answered 451 once each (greylisting), then accepted."""
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        if address in self.defer:
            self.defer.discard(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                                      message=parsed, raw=raw))
        return "250 Message accepted for delivery"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_relay(recorder: Recorder, port: int, *, implicit_tls: ssl.SSLContext | None = None,
                starttls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None) -> Controller:
    """Start an aiosmtpd relay on 127.0.0.1:`port` (implicit TLS, STARTTLS required, or a login required)."""
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and login is not None and (
            data.login.decode(), data.password.decode()) == login
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    options: dict[str, Any] = {}
    if starttls is not None:
        options |= {"tls_context": starttls, "require_starttls": True}
    if login is not None:
        options |= {"authenticator": authenticate, "auth_required": True, "auth_require_tls": True}
    controller = Controller(recorder, hostname="127.0.0.1", port=port, ssl_context=implicit_tls, **options)
    controller.start()
    return controller


class LoopbackRelay:
    """A plain loopback relay that can be stopped and started again on the same port (an outage)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (again) on the same port, keeping what was received."""
        if self._controller is None:
            self._controller = start_relay(self.recorder, self.port)

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 at a free port, recording what it receives."""
    recorder = Recorder()
    port = free_port()
    controller = start_relay(recorder, port)
    try:
        yield recorder, port
    finally:
        controller.stop()


class SendingNotifier(EmailNotifier):
    """
    A notifier whose outbox is delivered through the loopback relay as soon as a message is queued.

    The real outbox and sender run; only the sender's thread is replaced by a
    call, so a test can read the relay straight after notifying.
    """

    def __init__(self, folder: Path, port: int, *, sender: str = "encompass-alerts@northdale.example",
                 inbox: str = "http://127.0.0.1:8080/", **kwargs: Any) -> None:
        super().__init__(sender, inbox, outbox=MailOutbox(folder / "outbox.sqlite"), **kwargs)
        self.sending = OutboxSender(self.outbox, SmtpRelay(host="127.0.0.1", port=port, timeout_s=5), clock=self.clock)

    def queue(self, key: str, message: EmailMessage) -> bool:
        queued = super().queue(key, message)
        self.sending.send_due()
        return queued

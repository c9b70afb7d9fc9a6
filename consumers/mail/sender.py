"""
Delivering an outbox through the relay: what is due, once, with growing delays while the relay is away.

Each pass opens one connection for every message due. A relay that cannot be
reached (or drops the connection) defers every message not yet taken to the
outbox's next delay; an answer the relay means for good (5xx: an unknown
mailbox, a message refused by policy) marks that message refused; anything
else (4xx: greylisting, a full queue) defers it. Nothing is dropped: a
message leaves the outbox's pending set only when the relay has taken it or
refused it for good.

Once means: a message the relay took is marked sent and never sent again. A
crash in the moment between the relay's "250" and that mark sends it again
after the restart, with the same bytes and Message-ID, so a relay or mail
client that keeps Message-IDs shows it once; that window is the one SMTP
itself leaves open.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from safebus.clock import utc_now
from safebus.consumers.mail.outbox import MailOutbox, Pending
from safebus.consumers.mail.relay import SmtpRelay
from safebus.logs import get_logger

__all__ = ["OutboxSender", "SendReport"]

_log = get_logger("consumers.mail")

_IDLE = timedelta(seconds=1)
"""How often an idle sender looks for new messages."""


@dataclass(frozen=True)
class SendReport:
    """What one pass did."""

    sent: int = 0
    refused: int = 0
    deferred: int = 0


class OutboxSender:
    """Sends `outbox`'s due messages through `relay`: `send_due()` once, or `run(stop)` in a thread."""

    def __init__(self, outbox: MailOutbox, relay: SmtpRelay, *, clock: Callable[[], datetime] = utc_now,
                 batch: int = 100) -> None:
        self.outbox = outbox
        self.relay = relay
        self.clock = clock
        self.batch = batch

    def send_due(self) -> SendReport:
        """Send every message due now (up to the batch size); never raises for the relay's sake."""
        due = self.outbox.due(self.clock(), limit=self.batch)
        if not due:
            return SendReport()
        try:
            smtp = self.relay.connect()
        except (smtplib.SMTPException, OSError) as exc:
            return self._defer(due, f"relay unavailable: {type(exc).__name__}")
        sent = refused = 0
        with smtp:
            for index, pending in enumerate(due):
                try:
                    smtp.send_message(pending.message)
                except smtplib.SMTPRecipientsRefused as exc:  # before OSError: every SMTPException is one
                    codes = [code for code, _ in exc.recipients.values()]
                    if all(code >= 500 for code in codes):
                        refused += self._refuse(pending, f"recipient refused ({min(codes)})")
                    else:
                        self._defer([pending], f"recipient deferred ({min(codes)})")
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code >= 500:
                        refused += self._refuse(pending, f"refused ({exc.smtp_code})")
                    else:
                        self._defer([pending], f"deferred ({exc.smtp_code})")
                except OSError as exc:  # the connection is gone (SMTPServerDisconnected, a reset, a timeout)
                    report = self._defer(due[index:], f"connection lost: {type(exc).__name__}")
                    return SendReport(sent=sent, refused=refused, deferred=report.deferred)
                else:
                    self.outbox.sent(pending.key, now=self.clock())
                    sent += 1
        deferred = len(due) - sent - refused
        _log.info("mail.sent", sent=sent, refused=refused, deferred=deferred)
        return SendReport(sent=sent, refused=refused, deferred=deferred)

    def run(self, stop: threading.Event) -> None:
        """Send until `stop` is set, waking when the next message is due (or every second for new ones)."""
        while not stop.is_set():
            self.send_due()
            next_due = self.outbox.next_due()
            wait = _IDLE if next_due is None else min(_IDLE, max(next_due - self.clock(), timedelta(0)))
            stop.wait(wait.total_seconds())

    def _defer(self, messages: list[Pending], reason: str) -> SendReport:
        now = self.clock()
        retry_at = None
        for pending in messages:
            retry_at = self.outbox.failed(pending.key, now=now, reason=reason)
        _log.warning("mail.deferred", messages=len(messages), reason=reason,
                     retry_at=retry_at.isoformat() if retry_at else None)
        return SendReport(deferred=len(messages))

    def _refuse(self, pending: Pending, reason: str) -> int:
        self.outbox.refused(pending.key, now=self.clock(), reason=reason)
        _log.error("mail.refused", key=pending.key, reason=reason)
        return 1

"""
The e-mail that tells a setting's Key Adults an Operation Encompass alert is waiting.

It says only three things: a new alert is waiting, for which setting, and
where to sign in to read it (the inbox's start page).  Why no more:

- **E-mail is not a secure channel for safeguarding data.**  It is copied to
  phones, shared mailboxes, relays, backups and the sender's outbox; it is
  forwarded; it is read over shoulders in a staff room.  A child's name, date
  of birth, police reference or incident time in an e-mail would escape the
  inbox's access control, audit and erasure (the inbox's envelopes become
  unreadable when a child's keys are destroyed; a sent e-mail never does).
- **No notification id either, and the link is the start page, not the
  alert.**  An id in a URL says which alert and, across e-mails, that one child
  had several; the start page lists what is waiting once the Key Adult has
  signed in.
- **The subject is generic**, without the setting's name: subjects show in
  notification previews and on lock screens.
- **One message per recipient**, so Key Adults' addresses are not disclosed
  to each other and each message has its own id for tracing.

The notifier does not talk to the relay: it puts each message in the
worker's outbox (`safebus.consumers.mail`), whose sender delivers it through
the partnership's relay (TLS and login as configured) and retries while the
relay is away, so a relay outage delays a notice and never loses one, and
never holds up the inbox. Logs carry message ids, counts and the setting URN,
never addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from safebus.clock import utc_now
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdult
from safebus.consumers.mail.outbox import MailOutbox
from safebus.logs import get_logger
from safebus.schemas.encompass import KeyAdultRole

__all__ = ["SUBJECT", "EmailNotifier", "notice_text"]

SUBJECT = "Operation Encompass: a new alert is waiting"
"""The subject of every notice: nothing about the child, the incident or the setting."""

_log = get_logger("consumers.email_notice")


def notice_text(setting: EducationSetting, inbox_url: str) -> str:
    """The body of the notice for `setting`, linking to `inbox_url`."""
    return (
        f"A new Operation Encompass alert is waiting for {setting.name}.\n"
        "\n"
        f"Sign in to the school inbox to read and acknowledge it:\n{inbox_url}\n"
        "\n"
        "For the child's safety this e-mail does not say who the alert is\n"
        "about or what happened. Please do not reply to it or forward it.\n"
    )


class EmailNotifier:
    """Puts "an alert is waiting" notices (and the monitor's escalation e-mails) in the worker's outbox."""

    def __init__(self, sender: str, inbox_base_url: str, *, outbox: MailOutbox, include_deputies: bool = True,
                 clock: Callable[[], datetime] = utc_now) -> None:
        """
        Queue mail from `sender` in `outbox`, linking to the inbox at `inbox_base_url`.

        With `include_deputies` (the default) deputies get the notice as well
        as Key Adults; many settings rely on a deputy when the DSL is away.
        """
        self.sender = sender
        self.inbox_url = inbox_base_url.rstrip("/") + "/"
        self.include_deputies = include_deputies
        self.outbox = outbox
        self.clock = clock

    def recipients(self, setting: EducationSetting, key_adults: Sequence[KeyAdult]) -> list[KeyAdult]:
        """Who gets the notice: the setting's Key Adults, and its deputies if configured (others are ignored)."""
        return [k for k in key_adults if k.setting_urn == setting.urn
                and (k.role is KeyAdultRole.KEY_ADULT or self.include_deputies)]

    def compose(self, address: str, subject: str, text: str) -> EmailMessage:
        """A plain-text message to `address` from our sender, with a fresh Message-ID (kept across retries)."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = address
        message["Subject"] = subject
        message["Date"] = format_datetime(self.clock().astimezone(UTC), usegmt=True)
        domain = self.sender.rpartition("@")[2] or "safebus.invalid"
        message["Message-ID"] = make_msgid(domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders must not reply
        message.set_content(text)
        return message

    def message(self, setting: EducationSetting, recipient: KeyAdult) -> EmailMessage:
        """The notice for one recipient."""
        return self.compose(recipient.email, SUBJECT, notice_text(setting, self.inbox_url))

    def queue(self, key: str, message: EmailMessage) -> bool:
        """Put `message` in the outbox under `key` (one without personal data); False if that key is already in."""
        return self.outbox.put(key, message, now=self.clock())

    def notify(self, setting: EducationSetting, key_adults: Sequence[KeyAdult]) -> list[str]:
        """
        Queue the notice for `setting`'s Key Adults (and deputies, if configured); return the Message-IDs.

        One message per recipient. The outbox's sender delivers them; this
        never waits for the relay.
        """
        recipients = self.recipients(setting, key_adults)
        if not recipients:
            _log.warning("email_notice.no_recipients", setting_urn=setting.urn)
            return []
        queued = []
        for recipient in recipients:
            message = self.message(setting, recipient)
            message_id = str(message["Message-ID"])
            self.queue(f"alert-notice/{setting.urn}/{recipient.staff_id}/{message_id}", message)
            queued.append(message_id)
        _log.info("email_notice.queued", setting_urn=setting.urn, message_ids=queued)
        return queued

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

Sending uses stdlib `smtplib` to a relay the partnership runs; `starttls=True`
upgrades the connection (use it for any relay that is not on loopback).
Logs carry message ids, counts and the setting URN, never addresses.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdult
from safebus.errors import SafebusError
from safebus.logs import get_logger
from safebus.schemas.encompass import KeyAdultRole

__all__ = ["SUBJECT", "EmailNoticeError", "EmailNotifier", "notice_text"]

SUBJECT = "Operation Encompass: a new alert is waiting"
"""The subject of every notice: nothing about the child, the incident or the setting."""

_log = get_logger("consumers.email_notice")


class EmailNoticeError(SafebusError):
    """
    A notice could not be sent to every recipient.

    `sent` holds the message ids that did go; `failed` counts the recipients
    that did not (their addresses are not in the error, which may be logged).
    """

    def __init__(self, message: str, *, sent: list[str], failed: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.failed = failed


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
    """Sends "an alert is waiting" notices over SMTP."""

    def __init__(self, host: str, port: int, sender: str, inbox_base_url: str, *, include_deputies: bool = True,
                 starttls: bool = False, timeout: float = 30.0) -> None:
        """
        Send through the SMTP relay at `host`:`port` from `sender`, linking to the inbox at `inbox_base_url`.

        With `include_deputies` (the default) deputies get the notice as well
        as Key Adults; many settings rely on a deputy when the DSL is away.
        """
        self.host = host
        self.port = port
        self.sender = sender
        self.inbox_url = inbox_base_url.rstrip("/") + "/"
        self.include_deputies = include_deputies
        self.starttls = starttls
        self.timeout = timeout

    def recipients(self, setting: EducationSetting, key_adults: Sequence[KeyAdult]) -> list[KeyAdult]:
        """Who gets the notice: the setting's Key Adults, and its deputies if configured (others are ignored)."""
        return [k for k in key_adults if k.setting_urn == setting.urn
                and (k.role is KeyAdultRole.KEY_ADULT or self.include_deputies)]

    def message(self, setting: EducationSetting, recipient: KeyAdult) -> EmailMessage:
        """The notice for one recipient (plain text, with a fresh Message-ID)."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient.email
        message["Subject"] = SUBJECT
        message["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.sender.rpartition("@")[2] or "safebus.invalid"
        message["Message-ID"] = make_msgid(domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders must not reply
        message.set_content(notice_text(setting, self.inbox_url))
        return message

    def notify(self, setting: EducationSetting, key_adults: Sequence[KeyAdult]) -> list[str]:
        """
        Tell `setting`'s Key Adults (and deputies, if configured) that an alert is waiting.

        Returns the Message-IDs sent, one per recipient.  Raises
        EmailNoticeError when the relay cannot be reached or refuses any
        recipient (after trying them all).
        """
        recipients = self.recipients(setting, key_adults)
        if not recipients:
            _log.warning("email_notice.no_recipients", setting_urn=setting.urn)
            return []
        sent: list[str] = []
        failed = 0
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                for recipient in recipients:
                    message = self.message(setting, recipient)
                    try:
                        smtp.send_message(message)
                    except smtplib.SMTPRecipientsRefused:
                        failed += 1
                        continue
                    sent.append(str(message["Message-ID"]))
        except (smtplib.SMTPException, OSError) as exc:
            _log.error("email_notice.failed", setting_urn=setting.urn, sent=len(sent), error=type(exc).__name__)
            raise EmailNoticeError(f"could not send the alert notice for setting {setting.urn}: "
                                   f"{type(exc).__name__}", sent=sent, failed=len(recipients) - len(sent)) from exc
        _log.info("email_notice.sent", setting_urn=setting.urn, message_ids=sent, refused=failed)
        if failed:
            raise EmailNoticeError(f"{failed} of {len(recipients)} recipients refused for setting {setting.urn}",
                                   sent=sent, failed=failed)
        return sent

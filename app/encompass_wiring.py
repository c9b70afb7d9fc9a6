"""
Wiring for Operation Encompass delivery: calendars, the deadline monitor, the web inbox and its e-mail.

Kept apart from `safebus.app.wiring` (the router and the thin path) because this
side has its own configuration, read from the environment so the demo and a
deployment differ only in values:

- ``SAFEBUS_CALENDARS``: the partnership's calendars file (default: the
  synthetic sample);
- ``SAFEBUS_ENCOMPASS_POLICY``: the escalation policy file (default: packaged);
- ``SAFEBUS_SMTP`` (``host:port``), ``SAFEBUS_MAIL_FROM`` and
  ``SAFEBUS_INBOX_URL``: where notices go and what they link to; without
  ``SAFEBUS_SMTP`` nobody is e-mailed (steps are still audited);
- ``SAFEBUS_SMTP_SECURITY`` (``none``, ``starttls`` or ``tls``; default
  ``none`` for a relay on loopback, ``starttls`` otherwise),
  ``SAFEBUS_SMTP_USER`` with ``SAFEBUS_SMTP_PASSWORD_FILE`` (a file holding
  the password, so it is not in the environment of every child process) and
  ``SAFEBUS_SMTP_CA`` (the CA file that signs the relay's certificate).

Each worker that e-mails has its own outbox under the state directory
(``mail/<worker>-outbox.sqlite``) and a sender thread beside it.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.app.wiring import Settings, directory_source, key_service_for, tokeniser_for
from safebus.clock import utc_now
from safebus.consumers.encompass.calendar_files import load_calendars, sample_calendars
from safebus.consumers.encompass.calendars import CalendarBook
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import EscalationNotices, MonitorWorker, transactional_id
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.inbox.email_notice import EmailNotifier
from safebus.consumers.inbox.key_adults import (
    KeyAdults,
    default_key_adults_path,
    education_settings,
    ensure_synthetic_key_adults,
)
from safebus.consumers.inbox.web import PendingTransfer
from safebus.consumers.mail.outbox import MailOutbox
from safebus.consumers.mail.relay import SmtpRelay, SmtpSecurity
from safebus.consumers.mail.sender import OutboxSender
from safebus.consumers.web.account_store import account_source
from safebus.directory import AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.fact_signing import FactPublisher, Service, fact_publisher, fact_signer
from safebus.fenced_producer import FencedProducer
from safebus.jcs import canonical_model
from safebus.live_directory import DerivedMapping, follow
from safebus.metrics import MAIL_OUTBOX
from safebus.publisher import AgencyPublisher
from safebus.records import EVENT_ID, Output
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import Acknowledged, FileTransferConfirmed
from safebus.schemas.encompass import EncompassAcknowledged
from safebus.settings import database_url

__all__ = [
    "Mail",
    "acknowledgement_publisher",
    "alert_notice",
    "build_monitor_worker",
    "calendars_for",
    "due_by_lookup",
    "key_adults_for",
    "mail_for",
    "mail_relay",
    "open_monitor",
    "transfer_confirmation_publisher",
    "transfers_lookup",
]


def calendars_for() -> CalendarBook:
    """The partnership's setting calendars."""
    path = os.environ.get("SAFEBUS_CALENDARS")
    return load_calendars(path) if path else sample_calendars()


def _urn_of(directory: Directory) -> dict[str, str]:
    return {school.id: school.urn for school in directory.of_kind(AgencyKind.SCHOOL) if school.urn}


def open_monitor(settings: Settings, directory: Callable[[], Directory] | None = None) -> EncompassMonitor:
    """The deadline monitor's store on this machine (schools by URN from `directory`, live when it is)."""
    policy_path = os.environ.get("SAFEBUS_ENCOMPASS_POLICY")
    return EncompassMonitor(
        settings.monitor_path, database=database_url(), calendars=calendars_for(),
        policy=load_policy(Path(policy_path) if policy_path else None),
        urn_of=DerivedMapping(directory or directory_source(settings.store), _urn_of),
    )


def mail_relay() -> SmtpRelay | None:
    """The relay the environment names (see the module docstring), or None when none is configured."""
    address = os.environ.get("SAFEBUS_SMTP")
    if not address:
        return None
    host, _, port = address.rpartition(":")
    host = host or "127.0.0.1"
    if not port.isdigit():
        raise ConfigError(f"SAFEBUS_SMTP={address!r} is not host:port")
    loopback = host == "localhost" or (host.replace(".", "").isdigit() and ipaddress.ip_address(host).is_loopback)
    security_name = os.environ.get("SAFEBUS_SMTP_SECURITY", "none" if loopback else "starttls")
    try:
        security = SmtpSecurity(security_name)
    except ValueError:
        raise ConfigError(f"SAFEBUS_SMTP_SECURITY={security_name!r} is not one of "
                          f"{', '.join(s.value for s in SmtpSecurity)}") from None
    password_file = os.environ.get("SAFEBUS_SMTP_PASSWORD_FILE")
    password = Path(password_file).read_text().strip() if password_file else None
    ca = os.environ.get("SAFEBUS_SMTP_CA")
    return SmtpRelay(host=host, port=int(port), security=security, username=os.environ.get("SAFEBUS_SMTP_USER"),
                     password=password, ca_file=Path(ca) if ca else None)


@dataclass(frozen=True)
class Mail:
    """A worker's e-mail: the notifier that queues, and the sender that delivers its outbox."""

    notifier: EmailNotifier
    sender: OutboxSender

    def start(self, stop: threading.Event) -> threading.Thread:
        """Deliver the outbox in a thread until `stop` is set; its depth is reported as a metric."""
        outbox = self.notifier.outbox
        MAIL_OUTBOX.labels(state="pending").set_function(lambda: outbox.counts().pending)
        MAIL_OUTBOX.labels(state="refused").set_function(lambda: outbox.counts().refused)
        thread = threading.Thread(target=self.sender.run, args=(stop,), name="mail-sender", daemon=True)
        thread.start()
        return thread


def mail_for(settings: Settings, worker: str, *, clock: Callable[[], datetime] = utc_now) -> Mail | None:
    """`worker`'s outbox, notifier and sender for the configured relay, or None when no relay is configured."""
    relay = mail_relay()
    if relay is None:
        return None
    outbox = MailOutbox(settings.state_dir / "mail" / f"{worker}-outbox.sqlite")
    notifier = EmailNotifier(os.environ.get("SAFEBUS_MAIL_FROM", "encompass-alerts@safebus.invalid"),
                             os.environ.get("SAFEBUS_INBOX_URL", "http://127.0.0.1:8080/"), outbox=outbox, clock=clock)
    return Mail(notifier=notifier, sender=OutboxSender(outbox, relay, clock=clock))


def key_adults_for(settings: Settings) -> KeyAdults:
    """The Key Adult accounts of the settings this machine hosts: their file, or the shared database's copy."""
    path = default_key_adults_path(settings.state_dir)
    return KeyAdults(path, source=account_source(path, name="key-adults", what="Key Adult"))


def build_monitor_worker(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
                         mail: Mail | None = None) -> MonitorWorker:
    """
    The monitor following the audit topic and taking escalation steps.

    It follows the signed directory topic too, so a school published while it
    runs is tracked by its own URN and calendar and its Key Adults are found.
    """
    directory = directory_source(settings.store, clock=clock)
    follow(directory, bootstrap=settings.bootstrap, topic=settings.names.agencies)
    monitor = open_monitor(settings, directory)
    notices = None
    if mail is not None:
        notices = EscalationNotices(notifier=mail.notifier, key_adults=key_adults_for(settings),
                                    settings=DerivedMapping(directory, education_settings), monitor=monitor)
    facts = FactPublisher(fact_signer(settings.store, Service.DEADLINE_MONITOR, audit_topic=settings.names.audit),
                          FencedProducer(settings.bootstrap, transactional_id(settings.names)))  # one writer at a time
    return MonitorWorker(bootstrap=settings.bootstrap, names=settings.names, monitor=monitor, notices=notices,
                         clock=clock, facts=facts,
                         directory=directory)  # one live directory: a rotated service key attributes at once


def acknowledgement_publisher(settings: Settings, monitor: EncompassMonitor,
                              *, clock: Callable[[], datetime] = utc_now) -> Callable[[EncompassAcknowledged], None]:
    """
    What happens when a Key Adult acknowledges: the school's signed event on the bus, and an audit fact.

    The ``encompass.acknowledged`` event is sealed with the school's own keys
    and published to the school's ingress topic (the partnership's record of
    what the school said).  The ``audit.acknowledged`` fact carries the same id
    space (derived from the notification) and the deadline, so the police and
    the partnership see it in the audit log and the on-time report.
    """
    store = settings.store
    live = directory_source(store)
    facts = fact_publisher(store, Service.INBOX_WEB, audit_topic=settings.names.audit, bootstrap=settings.bootstrap)
    publishers: dict[str, AgencyPublisher] = {}
    seen: list[Directory] = []

    def publisher_for(urn: str) -> AgencyPublisher:
        directory = live()
        if not seen or seen[0] is not directory:  # a new school, or rotated keys: build publishers again
            seen[:] = [directory]
            publishers.clear()
        if urn not in publishers:
            school = directory.school_by_urn(urn)
            if school is None:
                raise KeyError(f"no school with URN {urn}")
            publishers[urn] = AgencyPublisher(
                bootstrap=settings.bootstrap, agency=store.private_keys(school.id), kind=AgencyKind.SCHOOL,
                router=directory.router().public_keys(), names=settings.names,
                tokeniser=tokeniser_for(settings.state_dir), keys=key_service_for(settings.state_dir), clock=clock)
        return publishers[urn]

    def acknowledged(event: EncompassAcknowledged) -> None:
        publisher_for(event.setting_urn).publish([event])
        tracked = monitor.tracked(event.notification_id)
        fact = Acknowledged(
            **event_metadata(Acknowledged, producer=event.producer, occurred_at=event.acknowledged_at,
                             recorded_at=clock(), event_id=event.event_id,
                             subjects=(tracked.subject,) if tracked and tracked.subject else ()),
            notification_id=event.notification_id, setting_urn=event.setting_urn,
            staff_id=event.acknowledged_by.staff_id, role=event.acknowledged_by.role.value,
            acknowledged_at=event.acknowledged_at, due_by=tracked.due_by if tracked else None,
        )
        facts.publish([Output(topic=settings.names.audit, key=event.notification_id.encode(),
                              value=canonical_model(fact), headers=((EVENT_ID, fact.event_id.encode()),))])

    return acknowledged


def due_by_lookup(monitor: EncompassMonitor) -> Callable[[str], datetime | None]:
    """The deadline of a notification, for the inbox to show."""
    def lookup(notification_id: str) -> datetime | None:
        tracked = monitor.tracked(notification_id)
        return tracked.due_by if tracked else None

    return lookup


def alert_notice(settings: Settings, notifier: EmailNotifier, directory: Callable[[], Directory] | None = None
                 ) -> Callable[[set[str]], None]:
    """
    The e-mail that new alerts wait in these settings' inboxes, queued by `notifier`.

    Settings hosted here get a Key Adult and a deputy account on first use when
    ``SAFEBUS_DEMO_PASSWORD`` is set (synthetic partnerships only).
    """
    key_adults = key_adults_for(settings)
    settings_by_urn = DerivedMapping(directory or directory_source(settings.store), education_settings)
    demo_password = os.environ.get("SAFEBUS_DEMO_PASSWORD")
    if demo_password:
        ensure_synthetic_key_adults(key_adults, settings_by_urn.values(), password=demo_password)

    def notify(urns: set[str]) -> None:
        for urn in sorted(urns):
            setting = settings_by_urn.get(urn)
            if setting is not None:
                if demo_password:  # a synthetic setting published while the inbox runs gets its accounts too
                    ensure_synthetic_key_adults(key_adults, [setting], password=demo_password)
                notifier.notify(setting, key_adults.for_setting(urn))

    return notify


def transfers_lookup(monitor: EncompassMonitor) -> Callable[[str], list[PendingTransfer]]:
    """The file transfers a setting still owes, for the inbox's transfers page."""
    def lookup(urn: str) -> list[PendingTransfer]:
        return [PendingTransfer(transfer_id=t.notification_id, subject=t.subject or "", new_setting_urn=t.recipient_id,
                                due_by=t.due_by) for t in monitor.pending_transfers(urn)]

    return lookup


def transfer_confirmation_publisher(settings: Settings) -> Callable[[FileTransferConfirmed], None]:
    """Publishes a Key Adult's confirmation that a file was sent on, as an audit fact (the monitor closes it)."""
    facts = fact_publisher(settings.store, Service.INBOX_WEB, audit_topic=settings.names.audit,
                           bootstrap=settings.bootstrap)

    def publish(fact: FileTransferConfirmed) -> None:
        facts.publish([Output(topic=settings.names.audit, key=fact.transfer_id.encode(),
                              value=canonical_model(fact), headers=((EVENT_ID, fact.event_id.encode()),))])

    return publish

"""
Delivers Operation Encompass notifications from school egress topics into inboxes.

For each batch of records: (1) open each envelope with its school's key,
checking the router's signature and that it was published on that school's own
topic; (2) validate it as a notification for *this* school's URN; (3) store the
batch in one transaction (idempotently); (4) only then commit the offsets.  A
record that fails (1) or (2) is dead-lettered with its reason before the
commit, so it can neither block the school's queue nor be lost.

The directory is live (`safebus.live_directory`): a school published while
the worker runs is hosted (its topic subscribed) within the watcher's poll,
a rotated key is read at once, and alerts dead-lettered only because a key
was not yet known are tried again (`safebus.dead_letter_retry`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from safebus.consumers._delivery import HostedAgency, deliver_batch, delivery_consumer, origin_of, refuse, run_batches
from safebus.consumers.audit.facts import delivered_fact
from safebus.consumers.inbox.store import Arrival, InboxStore
from safebus.dead_letter_retry import HeldDeadLetters
from safebus.directory import Directory, OnlyFrom
from safebus.envelope import open_envelope
from safebus.errors import InvalidEnvelope, SafebusError
from safebus.fact_signing import FactPublisher, FactSigner
from safebus.health import WorkerHealth
from safebus.kafka_io import reliable_producer
from safebus.keyservice import KeyService
from safebus.live_directory import Refresher, following
from safebus.logs import get_logger
from safebus.records import Origin, Output, Record
from safebus.schemas.audit import DeliveryChannel
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.validation import validation_detail
from safebus.topics import TopicNames

__all__ = ["HostedSchool", "InboxWorker"]

_log = get_logger("consumer.inbox")


HostedSchool = HostedAgency
"""A school whose inbox this worker fills, with its private keys."""


class InboxWorker:
    """Consumes the egress topics of the hosted schools into one inbox store."""

    def __init__(
        self,
        *,
        bootstrap: str,
        schools: list[HostedSchool],
        directory: Callable[[], Directory],
        store: InboxStore,
        names: TopicNames,
        clock: Callable[[], datetime],
        subject_keys: KeyService,
        fact_signer: FactSigner,
        group_id: str = "safebus-school-inbox",
        notify: Callable[[set[str]], object] | None = None,
        hosted: Callable[[Directory], list[HostedSchool]] | None = None,
    ) -> None:
        """
        Subscribe nothing yet; `run` does.

        `notify` is told the URNs of settings that received new alerts in a
        batch, after they are stored (the e-mail notice that an alert waits).
        `hosted` derives the hosted schools from a directory, again at every
        directory change (without it `schools` stays the hosted set).
        """
        self.hosted = hosted
        self._refresher = Refresher(directory)
        self._held: HeldDeadLetters[Arrival] = HeldDeadLetters(what="alerts", clock=clock)
        self._owed: list[Output] = []
        self._bootstrap = bootstrap
        self.notify = notify
        self.subject_keys = subject_keys
        self.schools = {names.egress(s.agency.id): s for s in schools}
        self.directory = directory
        self.store = store
        self.names = names
        self.clock = clock
        self._consumers = lambda: delivery_consumer(bootstrap, group_id)
        self._producer = reliable_producer(bootstrap)
        self._delivered: list[Output] = []
        self.publish_audit: Callable[[list[Output]], None] = FactPublisher(fact_signer, self._producer)
        """Where delivery facts go (signed by `fact_signer`, to the audit topic, acknowledged by the broker)."""

    def run(self, stop: threading.Event, *, batch_size: int = 500, health: WorkerHealth | None = None) -> None:
        """Deliver until `stop` is set (the shared loop commits only after each batch is stored; see its `health`)."""
        with following(self.directory, bootstrap=self._bootstrap, topic=self.names.agencies):
            run_batches(self._consumers, self.current_topics, self.deliver, stop, batch_size=batch_size,
                        health=health)

    def current_topics(self) -> list[str]:
        """The hosted schools' topics; first catches up with a directory change (schools, keys, held alerts)."""
        if self._refresher.changed():
            self.refresh()
        self._publish_owed()
        return sorted(self.schools)

    def refresh(self) -> int:
        """Derive the hosted schools from the current directory again, then retry held alerts; return how many new."""
        if self.hosted is not None:
            self.schools = {self.names.egress(s.agency.id): s for s in self.hosted(self.directory())}
        if not len(self._held):
            return 0
        self._delivered = []
        arrivals = self._held.retry(lambda record: self._open(record.value, origin_of(record))).admitted
        if not arrivals:
            return 0
        known = self.store.received_at([a.notification_id for a in arrivals])
        fresh = {a.setting_urn for a in arrivals if a.notification_id not in known}
        new = self.store.store_many(arrivals, received_at=self.clock())
        self._owed.extend(self._delivered)  # published by `_publish_owed`, again after a broker failure
        if fresh and self.notify is not None:
            try:
                self.notify(fresh)
            except SafebusError as exc:
                _log.warning("alert_notice_failed", settings=len(fresh), error=type(exc).__name__)
        return new

    def _publish_owed(self) -> None:
        """Publish the delivery facts of retried alerts; raises BrokerError (kept, tried again) if unconfirmed."""
        if self._owed:
            self.publish_audit(self._owed)
            self._owed = []

    def deliver(self, records: list[Record]) -> int:
        """
        Store each record in its school's inbox; dead-letter the rest; return how many alerts were new.

        Then log each delivery as an audit fact, before the loop commits the
        offsets: a crash in between redelivers, and the fact's derived id
        keeps the log from counting it twice.
        """
        self._delivered = []
        self._publish_owed()
        fresh: set[str] = set()

        def store(arrivals: list[Arrival]) -> int:
            known = self.store.received_at([a.notification_id for a in arrivals])
            fresh.update(a.setting_urn for a in arrivals if a.notification_id not in known)
            return self.store.store_many(arrivals, received_at=self.clock())

        new = deliver_batch(records, self._open, store, self._producer, what="alerts",
                            deadletter_topic=self.names.deadletter)
        try:
            if self._delivered:
                self.publish_audit(self._delivered)
        finally:  # a batch retried after a failed publish finds its alerts stored: notify now or never
            if fresh and self.notify is not None:
                try:
                    self.notify(fresh)
                except SafebusError as exc:  # the alert is in the inbox; a failed notice must not redeliver it
                    _log.warning("alert_notice_failed", settings=len(fresh), error=type(exc).__name__)
        return new

    def _open(self, raw: bytes, origin: Origin) -> Arrival | Output:
        school = self.schools.get(origin.topic)
        if school is None:  # only between a directory change and the resubscription it causes
            return self._reject(raw, origin, "misaddressed", "not a hosted school's topic")
        try:
            directory = self.directory()
            opened = open_envelope(raw, recipient=school.keys, senders=OnlyFrom(directory, directory.router().id),
                                   topic=origin.topic, subject_keys=self.subject_keys.lookup)
            notification = EncompassNotification.model_validate_json(opened.plaintext)
        except InvalidEnvelope as exc:
            return self._reject(raw, origin, exc.reason, "")
        except ValidationError as exc:
            return self._reject(raw, origin, "schema-violation", validation_detail(exc))
        if notification.setting_urn != school.agency.urn:
            return self._reject(raw, origin, "misaddressed", "setting_urn does not match the topic's school")
        self._delivered.append(delivered_fact(
            output_id=notification.notification_id, recipient=school.agency.id, channel=DeliveryChannel.SCHOOL_INBOX,
            subjects=notification.subjects, at=self.clock(), audit_topic=self.names.audit))
        return Arrival(notification_id=notification.notification_id, setting_urn=notification.setting_urn,
                       envelope=raw)

    def _reject(self, raw: bytes, origin: Origin, reason: str, detail: str) -> Output:
        self._held.hold_raw(raw, origin, reason)
        return refuse(raw, origin, reason=reason, detail=detail, deadletter_topic=self.names.deadletter)

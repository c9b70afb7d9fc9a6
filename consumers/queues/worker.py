"""
Delivers referrals from the referral egress topics of hosted agencies into their work queues.

For each batch of records: (1) open each envelope with its agency's keyring,
checking the router's signature and that it was published on that agency's
own referral topic; (2) validate it as a `Referral`, check its metadata
matches the signed header and that it is addressed to *this* agency; (3) store
the batch in one transaction (idempotently, by referral id); (4) only then
commit the offsets (`_delivery.run_batches`).  A record that fails (1) or (2)
is dead-lettered with stage ``deliver`` before the commit, so it can neither
block an agency's queue nor be lost.

The directory is live (`safebus.live_directory`): when it changes, the hosted
agencies and their keyrings are derived again (a rotated key is read at once,
a new agency's topic subscribed), and records dead-lettered only because a
key was not yet known are tried again (`safebus.dead_letter_retry`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from safebus.consumers._delivery import HostedAgency, deliver_batch, delivery_consumer, origin_of, refuse, run_batches
from safebus.consumers.audit.facts import delivered_fact
from safebus.consumers.queues.store import QueueStore, ReferralArrival
from safebus.dead_letter_retry import HeldDeadLetters, RetryPolicy
from safebus.directory import Directory, OnlyFrom
from safebus.envelope import open_envelope
from safebus.errors import InvalidEnvelope
from safebus.fact_signing import FactPublisher, FactSigner
from safebus.health import WorkerHealth
from safebus.kafka_io import reliable_producer
from safebus.keyservice import KeyService
from safebus.live_directory import Refresher, following
from safebus.logs import get_logger
from safebus.records import Origin, Output, Record
from safebus.schemas.audit import DeliveryChannel
from safebus.schemas.registry import Family
from safebus.schemas.sharing import AnyReferral, referral_model
from safebus.schemas.validation import validation_detail
from safebus.topics import TopicNames

__all__ = ["HostedRecipient", "QueueWorker"]

_log = get_logger("consumer.queue")


HostedRecipient = HostedAgency
"""An agency whose referral queue this worker fills, with its private keys."""


class QueueWorker:
    """Consumes the referral topics of the hosted agencies into one queue store."""

    def __init__(
        self,
        *,
        bootstrap: str,
        recipients: list[HostedRecipient],
        directory: Callable[[], Directory],
        store: QueueStore,
        names: TopicNames,
        clock: Callable[[], datetime],
        subject_keys: KeyService,
        fact_signer: FactSigner,
        group_id: str = "safebus-referral-queues",
        hosted: Callable[[Directory], list[HostedRecipient]] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        """
        Subscribe nothing yet; `run` does.

        `hosted` derives the hosted agencies from a directory; given, it is
        asked again whenever the directory changes (without it the hosted set
        is `recipients`, fixed).
        """
        self.recipients = {names.egress(r.agency.id, Family.REFERRAL): r for r in recipients}
        self.hosted = hosted
        self.directory = directory
        self._refresher = Refresher(directory)
        self._held: HeldDeadLetters[ReferralArrival] = HeldDeadLetters(what="referrals", clock=clock,
                                                                        policy=retry_policy)
        self._owed: list[Output] = []
        self.store = store
        self.names = names
        self.clock = clock
        self.subject_keys = subject_keys
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._producer = reliable_producer(bootstrap)
        self._delivered: list[Output] = []
        self.publish_audit: Callable[[list[Output]], None] = FactPublisher(fact_signer, self._producer)
        """Where delivery facts go (signed by `fact_signer`, to the audit topic, acknowledged by the broker)."""

    @property
    def topics(self) -> list[str]:
        """The referral topics this worker consumes."""
        return sorted(self.recipients)

    def run(self, stop: threading.Event, *, batch_size: int = 500, health: WorkerHealth | None = None) -> None:
        """Deliver until `stop` is set, following the directory topic (see the shared loop's `health`)."""
        with following(self.directory, bootstrap=self._bootstrap, topic=self.names.agencies):
            run_batches(lambda: delivery_consumer(self._bootstrap, self._group_id), self.current_topics,
                        self.deliver, stop, batch_size=batch_size, health=health)

    def current_topics(self) -> list[str]:
        """The topics to consume now; first catches up with a directory change (hosted set, keys, retries)."""
        if self._refresher.changed():
            self.refresh()
        self._publish_owed()
        return self.topics

    def refresh(self) -> int:
        """Derive the hosted agencies from the current directory again, then retry held records; return delivered."""
        if self.hosted is not None:
            self.recipients = {self.names.egress(r.agency.id, Family.REFERRAL): r
                               for r in self.hosted(self.directory())}
        if not len(self._held):
            return 0
        self._delivered = []
        outcome = self._held.retry(lambda record: self.admit(record.value, origin_of(record)))
        new = self.store.store_many(outcome.admitted, received_at=self.clock()) if outcome.admitted else 0
        self._owed.extend(self._delivered)  # published by `_publish_owed`, again after a broker failure
        return new

    def _publish_owed(self) -> None:
        """Publish the delivery facts of retried referrals; raises BrokerError (kept, tried again) if unconfirmed."""
        if self._owed:
            self.publish_audit(self._owed)
            self._owed = []

    def deliver(self, records: list[Record]) -> int:
        """
        Store each record in its agency's queue; dead-letter the rest; return how many referrals were new.

        Each delivery is then logged as an audit fact before offsets are
        committed (its derived id makes a redelivery the same fact).
        """
        self._delivered = []
        new = deliver_batch(records, self.admit, lambda arrivals: self.store.store_many(
            arrivals, received_at=self.clock()), self._producer, what="referrals",
            deadletter_topic=self.names.deadletter)
        if self._delivered:
            self.publish_audit(self._delivered)
        return new

    def admit(self, raw: bytes, origin: Origin) -> ReferralArrival | Output:
        """The arrival to store for one record, or its dead letter (stage ``deliver``) with the reason."""
        recipient = self.recipients.get(origin.topic)
        if recipient is None:  # only possible if the subscription and the hosted set disagree
            return self._refuse(raw, origin, "misaddressed", "not a hosted agency's referral topic")
        try:
            directory = self.directory()
            opened = open_envelope(raw, recipient=recipient.keys, senders=OnlyFrom(directory, directory.router().id),
                                   topic=origin.topic, subject_keys=self.subject_keys.lookup)
        except InvalidEnvelope as exc:
            return self._refuse(raw, origin, exc.reason, "")
        kind = referral_model(opened.event_type)
        if kind is None:
            return self._refuse(raw, origin, "unexpected-event-type", opened.event_type[:100])
        try:
            referral: AnyReferral = kind.model_validate_json(opened.plaintext)
        except ValidationError as exc:
            return self._refuse(raw, origin, "schema-violation", validation_detail(exc))
        mismatched = [name for name, signed in (("event_id", opened.event_id), ("producer", opened.producer))
                      if getattr(referral, name) != signed]
        if mismatched:
            return self._refuse(raw, origin, "metadata-mismatch", ", ".join(mismatched))
        if referral.recipient != recipient.agency.id:
            return self._refuse(raw, origin, "misaddressed", "recipient does not match the topic's agency")
        self._delivered.append(delivered_fact(
            output_id=referral.referral_id, recipient=recipient.agency.id, channel=DeliveryChannel.WORK_QUEUE,
            subjects=referral.subjects, at=self.clock(), audit_topic=self.names.audit))
        return ReferralArrival(referral_id=referral.referral_id, recipient_id=recipient.agency.id,
                               event_id=referral.event_id, envelope=raw)

    def _refuse(self, raw: bytes, origin: Origin, reason: str, detail: str) -> Output:
        self._held.hold_raw(raw, origin, reason)
        return refuse(raw, origin, reason=reason, detail=detail, deadletter_topic=self.names.deadletter)

"""
Builds the referral-queue components from a state directory and settings.

The counterpart of `safebus.app.wiring` for the non-school recipients' work
queues, so that ``safebus queue run | show | take``, the demo and the tests
build them one way: which agencies get a queue, where the queue database is,
how stored referrals are opened, and how a take becomes a receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safebus.clock import utc_now
from safebus.consumers.queues.receipts import send_due_receipts
from safebus.consumers.queues.store import Opener, QueueStore
from safebus.consumers.queues.worker import HostedRecipient, QueueWorker
from safebus.directory import Agency, AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.fact_signing import Service, fact_signer
from safebus.publisher import AgencyPublisher
from safebus.schemas.sharing import AnyReferral, referral_model
from safebus.settings import store_location
from safebus.topics import TopicNames, channel_templates

if TYPE_CHECKING:
    # Only for annotations: `safebus.app.wiring` may import this module to wire
    # the queues in, and a top-level import back would make that a cycle.
    from safebus.app.wiring import Settings

__all__ = [
    "TakeResult",
    "build_queue_worker",
    "hosted_recipients",
    "open_queue_store",
    "queue_opener",
    "queue_path",
    "queue_recipient",
    "receipt_publisher",
    "referral_recipient_kinds",
    "show_queue",
    "take_referral",
]


def referral_recipient_kinds(names: TopicNames) -> frozenset[AgencyKind]:
    """
    The agency kinds that have a referral queue: those the topic registry gives a referral egress topic.

    Read from the channel templates rather than listed again here, so a kind
    added to the topics gets a queue and a kind removed cannot keep one.
    """
    return next(t.per_agency for t in channel_templates(names) if t.key == "egress-referral")


def queue_path(settings: Settings) -> Path:
    """The referral-queue database of this state directory (beside the school inbox)."""
    return settings.state_dir / "queues.sqlite"


def open_queue_store(settings: Settings) -> QueueStore:
    """The queue database (the caller closes it): its file, or the shared database (`store_location`)."""
    return QueueStore(store_location(queue_path(settings)))


def queue_recipient(settings: Settings, recipient_id: str, directory: Directory | None = None) -> Agency:
    """The directory entry of a queue's agency; raises ConfigError for an unknown agency or one with no queue."""
    agency = (directory or settings.store.load_directory()).get(recipient_id)
    if agency is None:
        raise ConfigError(f"no agency {recipient_id!r} in the directory (see 'safebus agency list')")
    kinds = referral_recipient_kinds(settings.names)
    if agency.kind not in kinds:
        raise ConfigError(f"{recipient_id} is a {agency.kind.value} agency: only "
                          f"{', '.join(sorted(k.value for k in kinds))} agencies have a referral queue")
    return agency


def queue_opener(settings: Settings) -> Opener:
    """
    Decrypts a stored referral for its agency; None once it can no longer be read (a subject's data erased).

    Raises ConfigError when the agency's keys are not in this state directory:
    that is a wrong machine, not an erasure, and must not be shown as one.
    """
    from safebus.app.wiring import router_sealed_reader

    directory = settings.store.load_directory()
    read = router_sealed_reader(settings)
    checked: set[str] = set()

    def open_referral(recipient_id: str, envelope: bytes) -> AnyReferral | None:
        if recipient_id not in checked:
            queue_recipient(settings, recipient_id, directory)
            checked.add(recipient_id)
        opened = read(recipient_id, envelope)
        if opened is None or (kind := referral_model(opened.event_type)) is None:
            return None
        return kind.model_validate_json(opened.plaintext)

    return open_referral


def hosted_recipients(settings: Settings, directory: Directory) -> list[HostedRecipient]:
    """Every referral recipient in `directory` whose private keys are in this state directory, with its keyring."""
    kinds = referral_recipient_kinds(settings.names)
    hosted = []
    for agency in directory.agencies:
        if agency.kind not in kinds:
            continue
        try:
            hosted.append(HostedRecipient(agency=agency, keys=settings.store.keyring(agency.id)))
        except ConfigError:
            continue  # another machine hosts this agency's queue
    return hosted


def build_queue_worker(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> QueueWorker:
    """A queue worker for every referral recipient whose private keys are in this state directory (now and later)."""
    from safebus.app.wiring import directory_source, key_service_for

    store = settings.store
    directory = directory_source(store, clock=clock)
    hosted = hosted_recipients(settings, directory())
    if not hosted:
        raise ConfigError("no referral recipient's keys in this state directory: nothing to deliver")
    return QueueWorker(
        bootstrap=settings.bootstrap, recipients=hosted, directory=directory,
        store=open_queue_store(settings), names=settings.names, clock=clock,
        subject_keys=key_service_for(settings.state_dir), group_id=f"{settings.names.prefix}-referral-queues",
        fact_signer=fact_signer(store, Service.QUEUE_WORKER, audit_topic=settings.names.audit),
        hosted=lambda current: hosted_recipients(settings, current),
    )


def receipt_publisher(settings: Settings, recipient_id: str, *,
                      clock: Callable[[], datetime] = utc_now) -> AgencyPublisher:
    """The publisher that sends `recipient_id`'s receipts, signed with its own current keys, sealed for the router."""
    from safebus.app.wiring import key_service_for, tokeniser_for

    directory = settings.store.load_directory()
    agency = queue_recipient(settings, recipient_id, directory)
    return AgencyPublisher(
        bootstrap=settings.bootstrap, agency=settings.store.private_keys(agency.id), kind=agency.kind,
        router=directory.router().public_keys(), names=settings.names, tokeniser=tokeniser_for(settings.state_dir),
        keys=key_service_for(settings.state_dir), clock=clock,
    )


@dataclass(frozen=True, kw_only=True)
class TakeResult:
    """What one ``queue take`` did."""

    taken: bool
    """False when the referral had already been taken (nothing changes)."""
    receipts: tuple[str, ...]
    """Event ids of the receipts published now: this take's, plus any an earlier failed publish left due."""


def take_referral(settings: Settings, recipient_id: str, referral_id: str, staff_id: str, *,
                  clock: Callable[[], datetime] = utc_now) -> TakeResult:
    """
    Take a referral from `recipient_id`'s queue as `staff_id` and publish the receipt.

    The take is recorded first, then every receipt still due is published,
    then marked sent: taking an already-taken referral publishes nothing new.
    Raises NotInQueue (a SafebusError) when the referral is not in this queue,
    ConfigError for an agency with no queue, BrokerError when the broker does
    not acknowledge (the take stands; its receipt stays due for the next take).
    """
    queue_recipient(settings, recipient_id)
    store = open_queue_store(settings)
    try:
        taken = store.take(recipient_id, referral_id, staff_id, clock())
        receipts = send_due_receipts(store, receipt_publisher(settings, recipient_id, clock=clock), clock=clock)
    finally:
        store.close()
    return TakeResult(taken=taken, receipts=tuple(receipts))


def show_queue(settings: Settings, recipient_id: str) -> list[str]:
    """The lines of ``safebus queue show --recipient ID``: a heading, then each referral, oldest first."""
    agency = queue_recipient(settings, recipient_id)
    store = open_queue_store(settings)
    try:
        items = store.items(recipient_id, queue_opener(settings))
    finally:
        store.close()
    waiting = sum(1 for item in items if item.taken_at is None)
    return [f"Referral queue: {agency.name} ({agency.id}), {len(items)} referral(s), {waiting} awaiting",
            *(line for item in items for line in item.describe())]

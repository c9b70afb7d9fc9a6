"""
Builds running components from a state directory and settings.

The command line, the demo, the tests and the benchmark all need "the processor
for this partnership" or "the inbox worker for these schools"; building them in
one place keeps those callers thin and makes them agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from safebus.clock import utc_now
from safebus.consumers.audit.ledger import AuditLedger, LogIdentity, LogKey
from safebus.consumers.audit.sequencer import AuditSequencer
from safebus.consumers.inbox.store import InboxStore
from safebus.consumers.inbox.worker import HostedSchool, InboxWorker
from safebus.deploy.broker import LocalBroker
from safebus.directory import AgencyKind, Directory, OnlyFrom, PartnershipStore
from safebus.envelope import Opened, open_envelope
from safebus.errors import ConfigError, InvalidEnvelope
from safebus.fact_signing import Service, fact_publisher, fact_signer
from safebus.jcs import canonical_model
from safebus.kafka_io import read_topic
from safebus.keys import PrivateKeys
from safebus.paths import cache_dir
from safebus.processors.agreements import agreement_files, load_agreements, ruleset_loaded
from safebus.processors.engine import SharingEngine
from safebus.processors.handler import IncidentHandler
from safebus.processors.replay import DEFAULT_MAX_AGE, DEFAULT_MAX_SKEW, ClockWindow, ReplayGuard
from safebus.processors.state import SqliteRouterState
from safebus.processors.state_changelog import ChangelogRouterState, restore
from safebus.producers.police import PolicePublisher
from safebus.records import EVENT_ID, Output
from safebus.schemas.encompass import EncompassNotification
from safebus.settings import Settings as Settings
from safebus.settings import directory_source as directory_source
from safebus.settings import key_service_for as key_service_for
from safebus.settings import tokeniser_for as tokeniser_for
from safebus.topics import TopicRole, TopicSpec, bus_topics, subscribed_topics

__all__ = [
    "announce_ruleset",
    "build_audit_sequencer",
    "build_handler",
    "build_inbox_worker",
    "build_police_publisher",
    "hosted_schools",
    "inbox_opener",
    "ingress_topics",
    "open_ledger",
    "resolve_bootstrap",
    "restore_router_state",
    "router_sealed_reader",
    "topics_for",
]

# Settings and the state directory's standard pieces live in the kernel
# (safebus.settings) so a stage can use them; they are re-exported here so the
# composition root's callers import everything wiring-related from one place.


def resolve_bootstrap(explicit: str | None, state_dir: Path) -> str:
    """
    Find the broker: `explicit`, else ``KAFKA_BOOTSTRAP_SERVERS``, else this state directory's running broker.

    Raises ConfigError when none is available, telling the user how to start one.
    """
    if explicit:
        return explicit
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        return from_env
    status = LocalBroker(state_dir=state_dir, cache_dir=cache_dir()).status()
    if status.running and status.bootstrap:
        return status.bootstrap
    raise ConfigError("no Kafka broker: pass --bootstrap, set KAFKA_BOOTSTRAP_SERVERS, or run 'safebus broker up'")


def topics_for(settings: Settings) -> list[TopicSpec]:
    """Every topic of the partnership in `settings`."""
    return bus_topics(settings.store.load_directory(), settings.names)


def build_police_publisher(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> PolicePublisher:
    """The publisher of the directory's (first) police force."""
    directory = settings.store.load_directory()
    force = directory.of_kind(AgencyKind.POLICE)[0]
    return PolicePublisher(
        bootstrap=settings.bootstrap, agency=settings.store.private_keys(force.id), kind=AgencyKind.POLICE,
        router=directory.router().public_keys(), names=settings.names, tokeniser=tokeniser_for(settings.state_dir),
        keys=key_service_for(settings.state_dir), clock=clock,
    )


def build_handler(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
                  backfill_from: date | None = None) -> IncidentHandler:
    """The router's incident handler, with the agreements loaded and checked (`backfill_from`: see PayloadWindow)."""
    from safebus.processors.replay import payload_window_from_env

    directory = directory_source(settings.store, clock=clock)
    state = ChangelogRouterState(settings.state_dir / "router" / f"{settings.names.prefix}-state.sqlite",
                                 topic=settings.names.router_state)
    router = SharingEngine(agreements=load_agreements(), directory=directory(),
                           tokeniser=tokeniser_for(settings.state_dir), state=state)
    router_id = directory().router().id
    keys = settings.store.keyring(router_id)
    age_hours = float(os.environ.get("SAFEBUS_MAX_EVENT_AGE_HOURS", DEFAULT_MAX_AGE / timedelta(hours=1)))
    skew_seconds = float(os.environ.get("SAFEBUS_MAX_CLOCK_SKEW_SECONDS", DEFAULT_MAX_SKEW.total_seconds()))
    window = ClockWindow(max_age=timedelta(hours=age_hours), max_skew=timedelta(seconds=skew_seconds))
    seen = settings.state_dir / "router" / f"{settings.names.prefix}-seen.sqlite"
    return IncidentHandler(router=router, directory=directory, keys=keys, names=settings.names, clock=clock,
                           subject_keys=key_service_for(settings.state_dir), replay_guard=ReplayGuard(seen),
                           clock_window=window, reference_state=state,
                           payload_window=payload_window_from_env(backfill_from=backfill_from),
                           keyring_source=lambda: settings.store.keyring(router_id))


def restore_router_state(settings: Settings) -> int:
    """Replay the router-state changelog into the local store (idempotent); return the changes applied."""
    state = SqliteRouterState(settings.state_dir / "router" / f"{settings.names.prefix}-state.sqlite")
    return restore(state, read_topic(settings.bootstrap, settings.names.router_state))


def announce_ruleset(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> None:
    """Record on the audit topic which agreement files the router is about to route under (once per set)."""
    directory = settings.store.load_directory()
    router = directory.router().id
    fact = ruleset_loaded(agreement_files(), producer=router, at=clock())
    fact_publisher(settings.store, router, audit_topic=settings.names.audit, bootstrap=settings.bootstrap).publish([
        Output(topic=settings.names.audit, key=fact.ruleset_sha256.encode(), value=canonical_model(fact),
               headers=((EVENT_ID, fact.event_id.encode()),))])


def open_ledger(settings: Settings, *, read_only: bool = False) -> AuditLedger:
    """
    The audit ledger on this machine, with the log key (created on first use).

    `read_only` opens it with only the published verifier key (``log.vkey``),
    for readers such as the dashboard that must not hold the log's private key.
    """
    vkey = settings.audit_dir / "log.vkey"
    if read_only:
        if not vkey.exists():
            raise ConfigError(f"no audit log here yet ({vkey} is missing): run 'safebus audit sequence' first")
        return AuditLedger(settings.audit_dir / "ledger.sqlite", None,
                           identity=LogIdentity.from_vkey(vkey.read_text().strip()))
    key = LogKey.load_or_create(settings.audit_dir / "log-key.pem", origin=settings.audit_origin)
    if not vkey.exists():
        vkey.write_text(key.identity.vkey + "\n")
    every = int(os.environ.get("SAFEBUS_CHECKPOINT_EVERY", "1000"))
    interval = float(os.environ.get("SAFEBUS_CHECKPOINT_SECONDS", "10"))
    return AuditLedger(settings.audit_dir / "ledger.sqlite", key, checkpoint_every=every,
                       checkpoint_interval=timedelta(seconds=interval))


def build_audit_sequencer(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
                          on_appended: Callable[[list[int]], object] | None = None) -> AuditSequencer:
    """The sequencer that appends every fact on the bus to this machine's audit ledger."""
    return AuditSequencer(bootstrap=settings.bootstrap, names=settings.names, ledger=open_ledger(settings),
                          clock=clock, directory=directory_source(settings.store, clock=clock),
                          on_appended=on_appended)


def ingress_topics(settings: Settings, directory: Directory | None = None) -> list[str]:
    """The ingress topics the router consumes, by `directory` (default: this machine's directory file)."""
    directory = settings.store.load_directory() if directory is None else directory
    return subscribed_topics(directory, settings.names, party=AgencyKind.ROUTER.value, role=TopicRole.INGRESS)


def router_sealed_reader(settings: Settings) -> Callable[[str, bytes], Opened | None]:
    """
    Opens what the router sealed for a local agency: the opened envelope, or None once it can no longer be read.

    The caller gets the signed header with the plaintext, so it picks the model
    by the event type the router signed, never by what the plaintext contains.

    Shared by the school inbox and the referral queues, which store envelopes
    and open them on display (so erasing a subject reaches them too).  Only
    the router is accepted as sender.  The directory is followed (a long-running
    web inbox sees a new school or a rotation), and an agency's keyring is read
    once and again after a directory change or a ``wrong-recipient`` (its keys
    were rotated since).
    """
    store = settings.store
    directory = directory_source(store)
    keys = key_service_for(settings.state_dir)
    keyrings: dict[str, list[PrivateKeys]] = {}
    seen: list[Directory] = []

    def read(agency_id: str, envelope: bytes) -> Opened | None:
        current = directory()
        if not seen or seen[0] is not current:
            seen[:] = [current]
            keyrings.clear()
        for attempt in range(2):
            if agency_id not in keyrings:
                keyrings[agency_id] = store.keyring(agency_id)
            try:
                return open_envelope(envelope, recipient=keyrings[agency_id],
                                     senders=OnlyFrom(current, current.router().id), subject_keys=keys.lookup)
            except InvalidEnvelope as exc:
                if exc.reason != "wrong-recipient" or attempt:
                    return None
                del keyrings[agency_id]  # rotated since the keyring was read: read it again, once
        return None

    return read


def inbox_opener(settings: Settings) -> Callable[[str, bytes], EncompassNotification | None]:
    """Decrypts a stored alert for its school; None once the child's data has been erased."""
    directory = directory_source(settings.store)
    read = router_sealed_reader(settings)

    def open_alert(setting_urn: str, envelope: bytes) -> EncompassNotification | None:
        school = directory().school_by_urn(setting_urn)
        opened = read(school.id, envelope) if school else None
        if opened is None or opened.event_type != EncompassNotification.type_name():
            return None
        return EncompassNotification.model_validate_json(opened.plaintext)

    return open_alert


def hosted_schools(store: PartnershipStore, directory: Directory) -> list[HostedSchool]:
    """Every school in `directory` whose private keys are in this state directory, with its keyring."""
    hosted = []
    for school in directory.of_kind(AgencyKind.SCHOOL):
        try:
            hosted.append(HostedSchool(agency=school, keys=store.keyring(school.id)))
        except ConfigError:
            continue  # another machine hosts this school's inbox
    return hosted


def build_inbox_worker(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
                       notify: Callable[[set[str]], object] | None = None) -> InboxWorker:
    """An inbox worker for every school whose private key is in this state directory (now and when published)."""
    store = settings.store
    directory = directory_source(store, clock=clock)
    hosted = hosted_schools(store, directory())
    if not hosted:
        raise ConfigError("no school keys in this state directory: nothing to deliver")
    return InboxWorker(
        bootstrap=settings.bootstrap, schools=hosted, directory=directory,
        store=InboxStore(settings.inbox_location), names=settings.names, clock=clock,
        subject_keys=key_service_for(settings.state_dir),
        fact_signer=fact_signer(store, Service.INBOX_WORKER, audit_topic=settings.names.audit),
        group_id=f"{settings.names.prefix}-school-inbox", notify=notify,
        hosted=lambda current: hosted_schools(store, current),
    )

"""
The real broker for integration tests, and a running bus on it.

Broker, in order: ``KAFKA_BOOTSTRAP_SERVERS`` when set (failing loudly if it
does not answer; this process's ``SAFEBUS_KAFKA_*`` settings say how to reach
it); else the project's own, from its Maven-fetched jars: by default the
secured three-node cluster a partnership runs (``broker up --secure``: TLS,
SASL/SCRAM, ACLs on, three replicas with two in sync), with this process and
every worker it starts as the cluster's administrator, or, with
``SAFEBUS_TEST_KAFKA=single``, the single plaintext node of ``make demo`` (a
quicker loop while developing); else a testcontainers Kafka where a Docker
engine runs.  No broker is a test *failure*, never a skip: these tests are the
proof that the bus works.

Tests that stop and start a broker of their own (`plaintext_environment`) use
the single plaintext node whatever the session's broker is.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from safebus import kafka_security
from safebus.app.wiring import Settings, build_police_publisher, inbox_opener, topics_for
from safebus.consumers.audit.log import read_facts
from safebus.consumers.inbox.store import InboxStore, StoredAlert
from safebus.deploy.acls import desired_bindings
from safebus.deploy.acls_admin import grant_missing
from safebus.deploy.broker import LocalBroker, is_reachable
from safebus.deploy.cluster import ADMIN_USER, LocalCluster
from safebus.deploy.supervision import WORKERS
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.kafka_io import read_topic
from safebus.paths import cache_dir
from safebus.producers.police import PolicePublisher
from safebus.producers.synthetic import create_partnership
from safebus.records import Record
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import SharingDecision
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.police import (
    Adult,
    AdultRole,
    Child,
    CrimeStatus,
    DomesticAbuseIncident,
    Relationship,
    RiskGrade,
    RiskTool,
)
from safebus.topics import TopicNames

T = TypeVar("T")


@dataclass(frozen=True)
class Broker:
    """A reachable broker and whether it is the project's own (auto-creation known to be off)."""

    bootstrap: str
    local: bool
    cluster: LocalCluster | None = None
    """The secured local cluster this broker is, when it is one."""


TEST_KAFKA = "SAFEBUS_TEST_KAFKA"
"""``secure`` (default: the three-node secured cluster) or ``single`` (one plaintext node)."""


@contextlib.contextmanager
def kafka_identity(settings: dict[str, str]) -> Iterator[None]:
    """
    This process (and the workers it starts) with exactly `settings` as its ``SAFEBUS_KAFKA_*`` identity.

    Every other identity variable is cleared for the block, and the process's clients read the
    identity afresh on the way in and on the way out.
    """
    with pytest.MonkeyPatch.context() as env:
        for variable in (*kafka_security.VARIABLES.values(), kafka_security.CREDENTIALS_DIR):
            env.delenv(variable, raising=False)
        for name, value in settings.items():
            env.setenv(name, value)
        kafka_security.use(None)
        try:
            yield
        finally:
            kafka_security.use(None)
    kafka_security.use(None)


def plaintext_environment() -> contextlib.AbstractContextManager[None]:
    """This process (and the workers it starts) as a plaintext client, for a broker a test runs of its own."""
    return kafka_identity({})


def administrator_of(cluster: LocalCluster) -> contextlib.AbstractContextManager[None]:
    """
    This process as `cluster`'s administrator; the workers it starts (`Bus.start`) as their own principals,
    as ``safebus up`` runs them (`grant_partnership` gives them their ACLs first).
    """
    return kafka_identity({**cluster.environment(ADMIN_USER),
                           kafka_security.CREDENTIALS_DIR: str(cluster.credentials_dir)})


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Apache Kafka broker (or secured cluster) for the whole session."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        if not is_reachable(explicit, timeout_s=10):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={explicit} is set but no broker answers there")
        yield Broker(explicit, local=False)
        return
    wanted = os.environ.get(TEST_KAFKA, "secure")
    if wanted not in ("secure", "single"):
        pytest.fail(f"{TEST_KAFKA}={wanted!r}: expected 'secure' (the three-node secured cluster) or 'single'")
    if shutil.which("java") and shutil.which("mvn") and wanted == "secure":
        cluster = LocalCluster(state_dir=tmp_path_factory.mktemp("kafka"), cache_dir=cache_dir(), nodes=3)
        bootstrap = cluster.up().bootstrap
        assert bootstrap is not None
        try:
            with administrator_of(cluster):
                yield Broker(bootstrap, local=True, cluster=cluster)
        finally:
            cluster.down()
        return
    if shutil.which("java") and shutil.which("mvn"):
        broker = LocalBroker(state_dir=tmp_path_factory.mktemp("kafka"), cache_dir=cache_dir())
        status = broker.up()
        assert status.bootstrap is not None
        try:
            yield Broker(status.bootstrap, local=True)
        finally:
            broker.down()
        return
    try:
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
    except Exception as exc:  # noqa: BLE001 - report any reason there is no broker
        pytest.fail(f"no Kafka broker: KAFKA_BOOTSTRAP_SERVERS unset, no java/mvn, and testcontainers failed: {exc}")
    try:
        yield Broker(container.get_bootstrap_server(), local=False)
    finally:
        container.stop()


def wait_for(probe: Callable[[], T | None], *, timeout_s: float = 60.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass
class Bus:
    """A partnership with its topics on the broker and its router and inbox workers running."""

    settings: Settings
    store: PartnershipStore
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def names(self) -> TopicNames:
        """Topic names of this bus."""
        return self.settings.names

    def publisher(self) -> PolicePublisher:
        """The force's publisher."""
        return build_police_publisher(self.settings)

    def start(self, name: str, *extra: str, worker: str | None = None,
              home: Path | None = None) -> subprocess.Popen[bytes]:
        """
        Start worker `name` as its own process, logging to ``<state>/<name>.log``.

        `worker` (default `name`) is one of ``processor``, ``inbox``, ``queue``, ``sequencer``, ``monitor``,
        ``gateway``; a second instance of one gets its own `name`.  `extra` goes on its command line.
        `home` (default the bus's state directory) is the state directory it runs on: another host's.
        """
        argv = {"processor": ["processor", "run"], "inbox": ["inbox", "run"], "sequencer": ["audit", "sequence"],
                "monitor": ["encompass", "monitor"], "queue": ["queue", "run"],
                "gateway": ["gateway", "run"]}[worker or name]
        env = {**os.environ, "SAFEBUS_HOME": str(home or self.settings.state_dir),
               "SAFEBUS_TOPIC_PREFIX": self.names.prefix, "SAFEBUS_LOG_LEVEL": "INFO",
               **worker_identity(tuple(argv))}
        log = (self.settings.state_dir / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "safebus", *argv, *extra,
                                    "--bootstrap", self.settings.bootstrap],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop worker `name` with `sig` and wait for it."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def decisions(self, event_ids: set[str]) -> dict[str, SharingDecision]:
        """Audited decisions about `event_ids`, deduplicated by decision id."""
        facts = read_facts(self.settings.bootstrap, self.names.audit, SharingDecision)
        return {fid: d for fid, d in facts.items() if d.about_event_id in event_ids}

    def encompass(self, event_ids: set[str]) -> dict[str, SharingDecision]:
        """The per-child Operation Encompass decisions about `event_ids` (one per child)."""
        return {k: d for k, d in self.decisions(event_ids).items()
                if d.agreement_id == "operation-encompass" and d.clause[0] in "34"}

    def topic(self, name: str) -> list[Record]:
        """Every record now in topic `name`."""
        return read_topic(self.settings.bootstrap, name)

    def inbox(self) -> InboxStore:
        """The school inbox database (caller closes)."""
        return InboxStore(self.settings.inbox_path)

    def alert(self, urn: str, notification_id: str) -> StoredAlert | None:
        """One alert of a school's inbox as the Key Adult would see it, or None if it has not arrived."""
        inbox = self.inbox()
        try:
            alerts = inbox.alerts(urn, inbox_opener(self.settings))
        finally:
            inbox.close()
        return next((a for a in alerts if a.notification_id == notification_id), None)

    def notification(self, urn: str, notification_id: str) -> EncompassNotification | None:
        """The readable notification behind one alert, or None (not arrived, or erased)."""
        alert = self.alert(urn, notification_id)
        return alert.notification if alert else None

    def delivered(self, notification_ids: set[str]) -> set[str]:
        """Which of `notification_ids` have reached an inbox."""
        inbox = self.inbox()
        try:
            return set(inbox.received_at(sorted(notification_ids)))
        finally:
            inbox.close()

    def log(self, name: str) -> str:
        """A worker's log so far, for failure messages."""
        path = self.settings.state_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def worker_identity(argv: tuple[str, ...]) -> dict[str, str]:
    """The Kafka principal ``safebus up`` gives the worker running `argv` (none off a secured cluster)."""
    principal = next(w.principal for w in WORKERS if w.argv == argv)
    return kafka_security.component_environment(principal)


def grant_partnership(kafka: Broker, settings: Settings) -> None:
    """
    On the secured cluster: every ACL the partnership of `settings` needs (as ``safebus acls apply`` grants).

    Only added, never revoked: buses of other prefixes share the cluster (and the component principals)
    within one session; revoking drift is ``acls apply``'s own test (test_secured_cluster).
    """
    if kafka.cluster is None:
        return
    grant_missing(kafka.bootstrap, desired_bindings(settings.store.load_directory(), settings.names))


@contextlib.contextmanager
def running_bus(kafka: Broker, state: Path, *, prefix: str, stop_signal: int = signal.SIGTERM) -> Iterator[Bus]:
    """A fresh partnership in `state` with its topics applied and router and inbox running; stopped on exit."""
    store = PartnershipStore(state)
    create_partnership(store)
    settings = Settings(state_dir=state, bootstrap=kafka.bootstrap, names=TopicNames(prefix=prefix))
    apply_topics(kafka.bootstrap, topics_for(settings))
    grant_partnership(kafka, settings)
    running = Bus(settings=settings, store=store)
    running.start("processor")
    running.start("inbox")
    try:
        yield running
    finally:
        for name in list(running.processes):
            running.stop(name, stop_signal)


@pytest.fixture(scope="module")
def bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A fresh bus (own topic prefix, keys and state) with router and inbox running."""
    with running_bus(kafka, tmp_path_factory.mktemp("bus"), prefix=f"t{uuid.uuid4().hex[:10]}") as running:
        yield running


def make_incident(*children: Child, adults: tuple[Adult, ...] | None = None, narrative: str = "Synthetic.") -> (
    DomesticAbuseIncident
):
    """A police incident an hour ago with these children (and, by default, one adult suspect)."""
    incident_at = datetime.now(UTC) - timedelta(hours=1)
    return DomesticAbuseIncident(
        **event_metadata(DomesticAbuseIncident, producer="northdale-police", occurred_at=incident_at,
                         recorded_at=datetime.now(UTC)),
        police_reference=f"NDP-2026-{random.randint(0, 999_999):06d}",
        incident_at=incident_at,
        crime_status=CrimeStatus.CRIME,
        risk_tool=RiskTool.DARA,
        adults=adults or (Adult(first_name="Otis", surname="Pemberton", role=AdultRole.SUSPECT,
                                relationship=Relationship.PARENTS_PARTNER),),
        children=children,
        narrative=narrative,
        risk_grade=RiskGrade.MEDIUM,
    )

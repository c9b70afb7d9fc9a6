"""
Outages heal themselves, on a real broker this module owns (docs/adr/0002, docs/adr/0003).

What a partnership's operator relies on:

- **Broker restart.** ``broker down`` then ``broker up`` in the middle of a
  flow: the broker comes back on the same address, and the router, the school
  inbox, the referral queues, the audit sequencer, the Encompass monitor and
  the gateway resume by themselves; every share reaches its inbox exactly once
  and every decision is on the audit trail once as read.
- **Router kill -9.** A replacement (a restarted router, or a second one
  already running) takes over the dead router's partitions in well under the
  60 s Faust's default session timeout gave, so routing resumes within 20 s.
- **SIGTERM in any state.** With the broker down, every worker exits within
  10 s of SIGTERM.

The broker is the project's own `LocalBroker` in a temporary state directory
(never the session's shared broker: these tests stop it).  Each test has its
own bus (topic prefix, keys, state).  Measured times are printed, for the
report; each assertion's bound is the behaviour promised, not the measurement.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from safebus.app.wiring import ingress_topics
from safebus.consumers.audit.sequencer import GROUP_ID as SEQUENCER_GROUP
from safebus.deploy.broker import LocalBroker
from safebus.directory import AgencyKind
from safebus.errors import BrokerError
from safebus.paths import cache_dir
from safebus.producers.gateway import add_credential, default_credentials_path
from safebus.producers.synthetic import IncidentFactory
from safebus.schemas.decision import Outcome
from safebus.schemas.police import DomesticAbuseIncident
from tests.integration.conftest import Broker, Bus, plaintext_environment, running_bus
from tests.integration.test_kill_and_restart import Progress, inbox_counts

pytestmark = pytest.mark.kafka

TAKEOVER_BOUND_S = 20.0
"""Routing resumes this soon after a router is killed with SIGKILL (it took 60 s with Faust's defaults)."""
SIGTERM_BOUND_S = 10.0
"""Every worker is gone this soon after SIGTERM, whatever it was doing."""
RECOVERY_BOUND_S = 90.0
"""After the broker is back, every share published before and during the outage is delivered within this."""
MONITOR_GROUP = "safebus-encompass-monitor"
OUTAGE_S = 35.0
"""The broker stays away longer than a producer waits for a flush (30 s), so a batch in flight fails and is retried."""
HEALING_EVENTS = ("delivery_failed_retrying", "producer_renewed", "consumer_replaced", "idle_failed")


@dataclass(frozen=True)
class OwnBroker:
    """A broker these tests may stop and start."""

    local: LocalBroker
    bootstrap: str

    @property
    def broker(self) -> Broker:
        """As the shared fixtures take it."""
        return Broker(self.bootstrap, local=True)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    """The project's local broker in a state directory of this module's own."""
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.fail("the outage tests stop and start a broker: they need the project's own (java and mvn)")
    with plaintext_environment():
        local = LocalBroker(state_dir=tmp_path_factory.mktemp("outage-kafka"), cache_dir=cache_dir())
        status = local.up()
        assert status.bootstrap is not None
        try:
            yield OwnBroker(local=local, bootstrap=status.bootstrap)
        finally:
            local.down()


def schools_incidents(seed: int, count: int) -> list[DomesticAbuseIncident]:
    """`count` incidents whose every child is at a partnership school (one share per child)."""
    factory = IncidentFactory(random.Random(seed), now=datetime.now(UTC))
    return [factory.incident("schools") for _ in range(count)]


def publish_retrying(bus: Bus, incidents: list[DomesticAbuseIncident], *, within_s: float = 120.0) -> None:
    """Publish like a police system does: retry the same sealed records until the broker has them."""
    publisher = bus.publisher()
    sealed = [publisher.seal(incident) for incident in incidents]
    deadline = time.monotonic() + within_s
    while True:
        try:
            publisher.publish_outputs(sealed)
            return
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def shares_of(bus: Bus, incidents: list[DomesticAbuseIncident]) -> set[str] | None:
    """The notification ids of every child's share, once every child has a decision (else None)."""
    event_ids = {incident.event_id for incident in incidents}
    decided = bus.encompass(event_ids)
    if len(decided) < sum(len(incident.children) for incident in incidents):
        return None
    return {d.output_id for d in decided.values() if d.output_id}


def until(probe: Callable[[], bool], *, timeout_s: float, what: str, bus: Bus) -> float:
    """Poll `probe` every 0.25 s; return the seconds it took, or fail with every worker's log tail."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout_s:
            logs = "\n".join(f"--- {name}\n{bus.log(name)[-1500:]}" for name in sorted(bus.processes))
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs}")
        time.sleep(0.25)
    return time.monotonic() - started


def all_delivered(bus: Bus, incidents: list[DomesticAbuseIncident]) -> Callable[[], bool]:
    """A probe: every child of `incidents` decided, shared, and in the inbox."""
    def probe() -> bool:
        shared = shares_of(bus, incidents)
        return bool(shared) and shared is not None and bus.delivered(shared) == shared
    return probe


def assert_alive(bus: Bus, names: list[str]) -> None:
    """None of `names` has exited on its own."""
    for name in names:
        assert bus.processes[name].poll() is None, f"{name} exited with {bus.processes[name].returncode}\n" \
                                                   f"{bus.log(name)}"


def free_port() -> int:
    """A free loopback port for the gateway."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_post(port: int, token: str, payload: dict[str, Any]) -> int:
    """POST one event to the gateway; the HTTP status (0 if it does not answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/v1/events", body=json.dumps(payload).encode(),
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def start_gateway(bus: Bus) -> tuple[int, str]:
    """The gateway as its own process for the police force; its port and bearer token."""
    token = add_credential(default_credentials_path(bus.settings.state_dir), "northdale-police",
                           directory=bus.store.load_directory())
    port = free_port()
    bus.start("gateway", "--port", str(port))
    until(lambda: gateway_post(port, "not-a-token", {}) != 0, timeout_s=30, what="the gateway to listen", bus=bus)
    return port, token


def incident_payload(incident: DomesticAbuseIncident) -> dict[str, Any]:
    """An incident as a police system posts it to the gateway."""
    payload: dict[str, Any] = json.loads(incident.model_dump_json())
    return payload


@pytest.fixture
def bus_on_own_broker(own_broker: OwnBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A fresh bus on the module's broker with its router and inbox running (the test starts the rest)."""
    own_broker.local.up()  # a previous test may have left it down
    with running_bus(own_broker.broker, tmp_path_factory.mktemp("outage-bus"),
                     prefix=f"o{uuid.uuid4().hex[:10]}", stop_signal=signal.SIGKILL) as running:
        yield running


def test_a_broker_restart_mid_flow_heals_with_no_hand(own_broker: OwnBroker, bus_on_own_broker: Bus) -> None:
    """Broker down and up mid-flow: same address, every worker resumes, every share delivered once."""
    bus = bus_on_own_broker
    workers = ["processor", "inbox", "queue", "sequencer", "monitor"]
    for name in workers[2:]:
        bus.start(name)
    port, token = start_gateway(bus)
    warm, before, during = schools_incidents(1100, 3), schools_incidents(1101, 15), schools_incidents(1102, 15)
    publish_retrying(bus, warm)
    until(all_delivered(bus, warm), timeout_s=120, what="the bus to route and deliver", bus=bus)

    publish_retrying(bus, before)  # on the broker; being routed and delivered as it goes down
    down_at = time.monotonic()
    own_broker.local.down()
    feed = threading.Thread(target=publish_retrying, args=(bus, during), daemon=True)
    feed.start()  # the police keep publishing through the outage
    time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
    assert_alive(bus, workers)
    status = own_broker.local.up()
    up_at = time.monotonic()
    assert status.bootstrap == own_broker.bootstrap, "the restarted broker must keep its address"

    inbox_s = until(all_delivered(bus, warm + before + during), timeout_s=RECOVERY_BOUND_S,
                    what="the incidents published during the outage to be delivered", bus=bus)
    feed.join(timeout=60)
    gateway_status = 0

    def gateway_accepts() -> bool:
        nonlocal gateway_status
        gateway_status = gateway_post(port, token, incident_payload(schools_incidents(1103, 1)[0]))
        return gateway_status == 202

    gateway_s = until(gateway_accepts, timeout_s=60, what="the gateway to accept an incident", bus=bus)

    # Every consumer group has caught up: nothing waits to be redone, by any worker.
    progress = Progress(bus)
    schools = bus.store.load_directory().of_kind(AgencyKind.SCHOOL)
    groups = {
        "router": (f"{bus.names.prefix}-router", set(ingress_topics(bus.settings))),
        "inbox": (f"{bus.names.prefix}-school-inbox", {bus.names.egress(s.id) for s in schools}),
        "sequencer": (SEQUENCER_GROUP, {bus.names.audit, bus.names.deadletter, bus.names.agencies}),
        "monitor": (MONITOR_GROUP, {bus.names.audit}),
    }
    try:
        lags: dict[str, int | None] = {}

        def caught_up() -> bool:
            lags.update({name: progress.lag(group, topics) for name, (group, topics) in groups.items()})
            return all(lag == 0 for lag in lags.values())

        try:
            until(caught_up, timeout_s=RECOVERY_BOUND_S, what="every worker to commit past every record", bus=bus)
        except pytest.fail.Exception as exc:
            pytest.fail(f"lag per group at the last look: {lags}\n{exc}")
    finally:
        progress.close()
    recovery_s = time.monotonic() - up_at

    # Nothing lost, nothing doubled as read.
    incidents = warm + before + during
    event_ids = {incident.event_id for incident in incidents}
    decisions = bus.encompass(event_ids)
    shared = {d.output_id for d in decisions.values() if d.output_id}
    children = sum(len(incident.children) for incident in incidents)
    assert len(decisions) == children
    assert all(d.outcome is Outcome.SHARED for d in decisions.values())
    counts = inbox_counts(bus)
    assert {nid: counts[nid] for nid in shared} == dict.fromkeys(shared, 1), "each share in the inbox exactly once"
    ledger_ids = ledger_fact_ids(bus)
    assert {d.decision_id for d in decisions.values()} <= ledger_ids, "every decision reached the audit log"
    assert_alive(bus, [*workers, "gateway"])
    logs = {name: (bus.settings.state_dir / f"{name}.log").read_text(errors="replace") for name in workers}
    healed = {name: sum(logs[name].count(f'"{event}"') for event in HEALING_EVENTS) for name in workers}
    print(f"\nbroker restart: down for {up_at - down_at:.1f}s (stop, {OUTAGE_S:.0f}s away, start); after it answered "
          f"again: all {children} shares in the inbox in {inbox_s:.1f}s, gateway 202 in {inbox_s + gateway_s:.1f}s, "
          f"every group caught up in {recovery_s:.1f}s; retries/renewals logged per worker: {healed}")


def ledger_fact_ids(bus: Bus) -> set[str]:
    """Fact ids in the sequencer's ledger (read-only)."""
    import sqlite3

    db = sqlite3.connect(f"file:{bus.settings.audit_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return {str(row[0]) for row in db.execute("SELECT fact_id FROM leaves")}
    finally:
        db.close()


def test_b_a_killed_router_is_replaced_within_seconds(bus_on_own_broker: Bus) -> None:
    """kill -9 of the router: a restarted one, and a standing second one, route again in under 20 s."""
    bus = bus_on_own_broker
    warm = schools_incidents(1201, 3)
    publish_retrying(bus, warm)
    until(all_delivered(bus, warm), timeout_s=120, what="the router to route", bus=bus)

    # 1. The only router dies; its replacement is started at once.
    killed_at = time.monotonic()
    bus.stop("processor", signal.SIGKILL)
    bus.start("processor")
    after_restart = schools_incidents(1202, 6)  # spread over the incident topic's partitions
    publish_retrying(bus, after_restart)
    until(all_delivered(bus, after_restart), timeout_s=120, what="routing to resume after kill -9 and restart",
          bus=bus)
    restart_s = time.monotonic() - killed_at

    # 2. Two routers share the work; one dies and the other takes over its partitions.
    bus.start("processor-2", worker="processor")
    progress = Progress(bus)
    try:
        until(lambda: len(progress.members(f"{bus.names.prefix}-router")[1]) == 2, timeout_s=60,
              what="both routers in the group", bus=bus)
        settle = schools_incidents(1203, 3)
        publish_retrying(bus, settle)
        until(all_delivered(bus, settle), timeout_s=60, what="two routers routing", bus=bus)
    finally:
        progress.close()
    killed_at = time.monotonic()
    bus.stop("processor", signal.SIGKILL)
    after_kill = schools_incidents(1204, 9)
    publish_retrying(bus, after_kill)
    until(all_delivered(bus, after_kill), timeout_s=120, what="the standing router to take over", bus=bus)
    standby_s = time.monotonic() - killed_at

    incidents = warm + after_restart + settle + after_kill
    shared = shares_of(bus, incidents) or set()
    counts = inbox_counts(bus)
    assert {nid: counts[nid] for nid in shared} == dict.fromkeys(shared, 1), "each share in the inbox exactly once"
    assert len(shared) == sum(len(incident.children) for incident in incidents)
    print(f"\nrouter kill -9: routing resumed {restart_s:.1f}s after the kill with a restarted router, "
          f"{standby_s:.1f}s with a second router already running")
    assert restart_s < TAKEOVER_BOUND_S, f"restarted router took {restart_s:.1f}s"
    assert standby_s < TAKEOVER_BOUND_S, f"standing router took {standby_s:.1f}s"


def test_c_sigterm_with_the_broker_down_ends_every_worker(own_broker: OwnBroker, bus_on_own_broker: Bus) -> None:
    """Broker down, incidents in flight: SIGTERM ends router, inbox, queue, sequencer, monitor, gateway in 10 s."""
    bus = bus_on_own_broker
    workers = ["processor", "inbox", "queue", "sequencer", "monitor"]
    for name in workers[2:]:
        bus.start(name)
    port, token = start_gateway(bus)
    warm = schools_incidents(1301, 3)
    publish_retrying(bus, warm)
    until(all_delivered(bus, warm), timeout_s=120, what="the bus to route and deliver", bus=bus)

    own_broker.local.down()
    # Something is in flight as the broker goes: a gateway request waiting for the broker's confirmation.
    threading.Thread(target=gateway_post, args=(port, token, incident_payload(schools_incidents(1302, 1)[0])),
                     daemon=True).start()
    time.sleep(5.0)  # every worker is now retrying, waiting on a flush, or failing heartbeats
    names = [*workers, "gateway"]
    assert_alive(bus, names)

    processes: dict[str, subprocess.Popen[bytes]] = {name: bus.processes.pop(name) for name in names}
    sent = time.monotonic()
    for process in processes.values():
        process.send_signal(signal.SIGTERM)
    took: dict[str, float] = {}
    codes: dict[str, int | None] = {}
    while len(took) < len(processes) and time.monotonic() - sent < 30:
        for name, process in processes.items():
            if name not in took and process.poll() is not None:
                took[name], codes[name] = time.monotonic() - sent, process.returncode
        time.sleep(0.05)
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()
    print("\nSIGTERM with the broker down, exit after: "
          + ", ".join(f"{name} {took.get(name, float('inf')):.1f}s (status {codes.get(name)})" for name in names))
    slow = {name: took.get(name) for name in names if took.get(name, float("inf")) > SIGTERM_BOUND_S}
    assert not slow, f"still running {SIGTERM_BOUND_S:.0f}s after SIGTERM: {slow}\n" + "\n".join(
        f"--- {name}\n{bus.log(name)[-1500:]}" for name in slow)
    assert all(code in (0, 128 + signal.SIGTERM) for code in codes.values()), codes

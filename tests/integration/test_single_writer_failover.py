"""
Single writers with a hot standby on another host: the audit sequencer and the deadline monitor.

The sequencer: the log survives losing either instance, and stays one log.

What the information-governance officer relies on: whichever sequencer is
killed, frozen or restarted, every fact is in the log exactly once, every
host's ledger is the same rows, a rebuild from the bus gives those rows again,
and ``audit verify`` passes.  What the ops team relies on: nobody has to
promote the standby; it takes over by itself within seconds, and a sequencer
that wakes up after being replaced writes nothing (the broker refuses it).
The deadline monitor: what the safeguarding lead relies on is that every
notification keeps its deadline when the monitor's host dies, and that the
notifications shared afterwards get theirs, from the standby, by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from safebus.consumers.audit.log import read_facts
from safebus.fenced_producer import FencedProducer, WriterFenced
from safebus.kafka_io import read_topic
from safebus.records import Output
from safebus.schemas.audit import DeadlineSet
from safebus.schemas.police import Child, DomesticAbuseIncident
from tests.integration.conftest import Broker, Bus, make_incident, running_bus

pytestmark = pytest.mark.kafka

TAKEOVER_BOUND_S = 30.0
"""A generous bound for a loaded CI machine; bench/ measures the takeover (aim: 15 s)."""


@pytest.fixture(scope="module")
def bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus with checkpoints every second (so every takeover meets a checkpoint in flight)."""
    os.environ["SAFEBUS_CHECKPOINT_SECONDS"] = "1"
    try:
        with running_bus(kafka, tmp_path_factory.mktemp("failover") / "host-a",
                         prefix=f"f{uuid.uuid4().hex[:10]}") as running:
            yield running
    finally:
        os.environ.pop("SAFEBUS_CHECKPOINT_SECONDS", None)


def _another_host(bus: Bus, name: str) -> Path:
    """A second host given the partnership's state and the log key, with no ledger of its own yet."""
    home = bus.settings.state_dir.with_name(name)
    shutil.copytree(bus.settings.state_dir, home,
                    ignore=shutil.ignore_patterns("ledger*.sqlite*", "projection.sqlite*", "*.log"))
    return home


def _ledger(home: Path, bus: Bus) -> Path:
    return home / "audit" / bus.names.prefix / "ledger.sqlite"


def _leaves(path: Path) -> list[tuple[object, ...]]:
    """Every leaf row of a ledger file (read while its sequencer runs: the file is in WAL mode)."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT * FROM leaves ORDER BY idx").fetchall()
    finally:
        db.close()


def _decided(path: Path, incident_ids: set[str]) -> set[str]:
    """Which of `incident_ids` have a sharing decision in the ledger at `path`."""
    bodies = (json.loads(bytes(row[3])) for row in _leaves(path))  # type: ignore[call-overload]
    return {about for body in bodies if (about := body.get("about_event_id")) in incident_ids}


def _incidents(n: int, *, first: int) -> list[DomesticAbuseIncident]:
    return [make_incident(Child(first_name=f"Wren{k}", surname="Halloway", date_of_birth=date(2015, 3, 1 + k % 27),
                                present=True, school_urn="900101")) for k in range(first, first + n)]


def _wait(bus: Bus, probe: Callable[[], object], *, what: str, timeout_s: float = 60.0) -> None:
    """`wait_for`, failing with both sequencers' logs as they are at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    logs = "".join(f"\n--- {name}\n{bus.log(name)}" for name in ("sequencer-a", "sequencer-b", "monitor-a",
                                                                  "monitor-b"))
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}{logs}")


def _times(bus: Bus, name: str, event: str) -> int:
    """How often worker `name` has logged `event` (its whole log, not the tail `Bus.log` shows)."""
    path = bus.settings.state_dir / f"{name}.log"
    return path.read_text(errors="replace").count(f'"{event}"') if path.exists() else 0


def _says(bus: Bus, name: str, event: str) -> bool:
    return _times(bus, name, event) > 0


def _cli(bus: Bus, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAFEBUS_HOME": str(home), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix,
           "KAFKA_BOOTSTRAP_SERVERS": bus.settings.bootstrap}
    return subprocess.run([sys.executable, "-m", "safebus", "audit", *argv], env=env, capture_output=True,
                          text=True, check=False, timeout=180)


def test_the_standby_takes_over_a_killed_sequencer_and_every_host_holds_the_same_log(bus: Bus,
                                                                                     tmp_path: Path) -> None:
    host_a = bus.settings.state_dir
    bus.start("sequencer-a", worker="sequencer")
    _wait(bus, lambda: _says(bus, "sequencer-a", "audit_sequencer_leading"), what="host A leading")
    host_b = _another_host(bus, "host-b")  # provisioned with the log key A made
    bus.start("sequencer-b", worker="sequencer", home=host_b)
    _wait(bus, lambda: _says(bus, "sequencer-b", "audit_sequencer_standing_by"), what="host B standing by")
    assert not _says(bus, "sequencer-b", "audit_sequencer_leading"), "a standby joining takes no lease"

    publisher = bus.publisher()
    before = _incidents(5, first=0)
    publisher.publish(before)
    ids = {i.event_id for i in before}
    _wait(bus, lambda: _decided(_ledger(host_a, bus), ids) == ids, timeout_s=90, what="decisions in A's log")
    _wait(bus, lambda: _leaves(_ledger(host_b, bus)) == _leaves(_ledger(host_a, bus)) or None, timeout_s=60,
             what="B following A leaf for leaf")

    bus.stop("sequencer-a", signal.SIGKILL)
    killed = time.monotonic()
    after = _incidents(5, first=5)
    publisher.publish(after)
    ids |= {i.event_id for i in after}
    _wait(bus, lambda: _says(bus, "sequencer-b", "audit_sequencer_leading"), timeout_s=TAKEOVER_BOUND_S,
             what="host B taking over by itself")
    took = time.monotonic() - killed
    _wait(bus, lambda: _decided(_ledger(host_b, bus), ids) == ids, timeout_s=90,
             what=f"every decision in B's log ({took:.1f} s to take over)")

    bus.start("sequencer-a", worker="sequencer")  # A comes back: it stands by, and its ledger becomes B's
    _wait(bus, lambda: _times(bus, "sequencer-a", "audit_sequencer_standing_by") >= 2, what="A back as the standby")
    _wait(bus, lambda: (len(_leaves(_ledger(host_a, bus))) >= len(_leaves(_ledger(host_b, bus))) > 0
                      and _leaves(_ledger(host_a, bus)) == _leaves(_ledger(host_b, bus))[:len(
                          _leaves(_ledger(host_a, bus)))]) or None,
             timeout_s=60, what="A's ledger equal to B's")
    fact_ids = [row[1] for row in _leaves(_ledger(host_b, bus))]
    assert len(fact_ids) == len(set(fact_ids)), "no fact appended twice across the takeover"

    bus.stop("sequencer-b")  # SIGTERM: B signs a last checkpoint and hands the lease back to A
    _wait(bus, lambda: _times(bus, "sequencer-a", "audit_sequencer_leading") >= 2,
             what="A leading again after B stepped down")
    rebuilt = _cli(bus, host_b, "rebuild", "--into", str(tmp_path / "rebuilt.sqlite"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _leaves(tmp_path / "rebuilt.sqlite")[:len(fact_ids)] == _leaves(_ledger(host_b, bus))
    verified = _cli(bus, host_b, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    bus.stop("sequencer-a")


def test_a_writer_replaced_by_a_newer_instance_is_refused_by_the_broker(bus: Bus) -> None:
    """The fence itself: once the successor has begun, nothing the zombie sends is ever read."""
    topic = bus.names.deadletter
    zombie = FencedProducer(bus.settings.bootstrap, f"{bus.names.prefix}-fence-test")
    successor = FencedProducer(bus.settings.bootstrap, f"{bus.names.prefix}-fence-test")
    marker = uuid.uuid4().hex.encode()
    try:
        zombie.begin()
        zombie.produce_all([Output(topic=topic, key=b"zombie-before", value=marker)])
        successor.begin()
        with pytest.raises(WriterFenced):
            zombie.produce_all([Output(topic=topic, key=b"zombie-after", value=marker)])
        successor.produce_all([Output(topic=topic, key=b"successor", value=marker)])
    finally:
        zombie.close()
        successor.close()
    keys = [r.key for r in read_topic(bus.settings.bootstrap, topic) if r.value == marker]
    assert keys == [b"zombie-before", b"successor"]


def _tracked(path: Path) -> dict[str, tuple[object, ...]]:
    """Notification id -> (desk, recipient, setting, due by) as a monitor's store at `path` tracks it."""
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT notification_id, desk, recipient_id, setting_urn, due_by FROM tracked").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        db.close()
    return {row[0]: tuple(row[1:]) for row in rows}


def _monitor_store(home: Path, bus: Bus) -> Path:
    return home / "encompass" / f"{bus.names.prefix}-monitor.sqlite"


def _deadlines(bus: Bus) -> dict[str, set[str]]:
    """Notification id -> the ids of the deadline facts on the audit topic about it."""
    found: dict[str, set[str]] = {}
    for fact_id, fact in read_facts(bus.settings.bootstrap, bus.names.audit, DeadlineSet).items():
        found.setdefault(fact.notification_id, set()).add(fact_id)
    return found


def test_the_standby_monitor_takes_over_and_every_notification_keeps_one_deadline(bus: Bus) -> None:
    host_a = bus.settings.state_dir
    host_b = bus.settings.state_dir.with_name("host-b-monitor")
    shutil.copytree(host_a, host_b, ignore=shutil.ignore_patterns("encompass", "audit", "*.log"))
    bus.start("monitor-a", worker="monitor")
    _wait(bus, lambda: _says(bus, "monitor-a", "monitor_acting"), what="monitor A acting")
    bus.start("monitor-b", worker="monitor", home=host_b)
    _wait(bus, lambda: _says(bus, "monitor-b", "monitor_standing_by"), what="monitor B standing by")
    assert not _says(bus, "monitor-b", "monitor_acting"), "a standby joining takes no lease"

    publisher = bus.publisher()
    publisher.publish(_incidents(3, first=20))
    _wait(bus, lambda: len(_tracked(_monitor_store(host_a, bus))) >= 3, timeout_s=90, what="A tracking three")
    _wait(bus, lambda: _tracked(_monitor_store(host_b, bus)) == _tracked(_monitor_store(host_a, bus)),
          timeout_s=60, what="B tracking exactly what A tracks")
    before = _tracked(_monitor_store(host_a, bus))
    _wait(bus, lambda: set(before) <= set(_deadlines(bus)), timeout_s=60, what="A announcing every deadline")

    bus.stop("monitor-a", signal.SIGKILL)
    publisher.publish(_incidents(3, first=30))
    _wait(bus, lambda: _says(bus, "monitor-b", "monitor_acting"), timeout_s=TAKEOVER_BOUND_S,
          what="monitor B taking over by itself")
    _wait(bus, lambda: len(_tracked(_monitor_store(host_b, bus))) >= 6, timeout_s=90, what="B tracking all six")
    after = _tracked(_monitor_store(host_b, bus))
    assert {k: after[k] for k in before} == before, "every deadline kept as A set it"
    _wait(bus, lambda: set(after) <= set(_deadlines(bus)), timeout_s=60,
          what="B announcing the deadlines of what was shared after A died")
    announced = _deadlines(bus)
    assert all(len(announced[n]) == 1 for n in after), "one deadline fact per notification (ids fixed per item)"
    bus.stop("monitor-b")

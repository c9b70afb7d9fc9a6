"""
``safebus up`` / ``down`` on the real broker: supervisord brings a killed worker back and the flow completes.

The partnership's workers are started the way an operator starts them, with the
``safebus up`` command (its own process, supervisord detaching into the
background), not by the tests' `Bus.start`.  Then the school-inbox worker is
killed with SIGKILL — no shutdown hook, no offset committed on the way out — and
supervisord must start a replacement by itself; the seconds until it is spawned
and until supervisord counts it RUNNING (after ``startsecs``) are printed.  A
police incident published afterwards must still reach the school's inbox, which
needs the replacement to have taken the dead member's partitions (its session
expires after 8 s, docs/adr/0003).  ``safebus down`` must then leave no process
of the partnership anywhere: not supervisord, not any worker, found by the
``SAFEBUS_HOME`` in each process's environment (supervisord, whose own
environment lacks it, by its pid).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from safebus.app.wiring import Settings, topics_for
from safebus.deploy.supervision import WORKERS, Supervisor, health_ports
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.producers.synthetic import create_partnership
from safebus.schemas.decision import Outcome
from safebus.schemas.police import Child
from safebus.topics import TopicNames
from tests.integration.conftest import Broker, Bus, grant_partnership, make_incident, wait_for

pytestmark = pytest.mark.kafka


def _free_base(count: int = len(WORKERS)) -> int:
    """A base port with `count` free ports from it (so this test's workers collide with nothing on the machine)."""
    for _ in range(50):
        base = random.randint(20000, 60000)
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise AssertionError("no run of free ports")


_HEALTH_BASE = _free_base()


def _safebus(bus: Bus, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``safebus <command>`` for this partnership as an operator would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "safebus", "--state-dir", str(bus.settings.state_dir), "--prefix", bus.names.prefix,
         "--log-level", "INFO", *command],
        capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "SAFEBUS_HEALTH_PORT_BASE": str(_HEALTH_BASE)})


def _ready(port: int) -> bool:
    return _status(port, "/readyz") == 200


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return 0


def _processes_of(state: Path) -> set[int]:
    """Every live process whose environment names `state` as its SAFEBUS_HOME: the workers (and anything they start)."""
    marker = f"SAFEBUS_HOME={state}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in environment and _alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _log(state: Path, name: str) -> str:
    path = state / "logs" / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="module")
def supervised(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A fresh partnership with its topics applied and nothing running yet; whatever ``up`` started is downed."""
    state = tmp_path_factory.mktemp("supervised")
    store = PartnershipStore(state)
    create_partnership(store)
    settings = Settings(state_dir=state, bootstrap=kafka.bootstrap,
                        names=TopicNames(prefix=f"t{uuid.uuid4().hex[:10]}"))
    apply_topics(kafka.bootstrap, topics_for(settings))
    grant_partnership(kafka, settings)
    bus = Bus(settings=settings, store=store)
    try:
        yield bus
    finally:
        Supervisor(state_dir=state).down()


def test_a_killed_worker_comes_back_and_the_flow_completes(supervised: Bus) -> None:
    """up, SIGKILL the inbox worker, supervisord restarts it, an incident reaches the inbox, down leaves nothing."""
    state = supervised.settings.state_dir
    supervisor = Supervisor(state_dir=state)

    # (1): up starts every worker (no gateway credential: the gateway is left out and says so).
    started = _safebus(supervised, "up", "--bootstrap", supervised.settings.bootstrap)
    assert started.returncode == 0, f"{started.stdout}{started.stderr}\n{supervisor.log_tail()}"
    status = supervisor.status()
    assert status.all_running
    assert {w.name for w in status.workers} == {"processor", "inbox", "queues", "sequencer", "monitor"}
    assert "gateway: not started" in started.stdout
    ports = health_ports(_HEALTH_BASE, [w for w in WORKERS if w.name != "gateway"])
    assert f"processor 127.0.0.1:{ports['processor']}" in started.stdout
    for name, port in ports.items():  # each supervised worker answers on its own port, and gets ready
        wait_for(functools.partial(_ready, port), timeout_s=120,
                 what=f"{name} ready on {port}\n{_log(state, name)}")

    # (2): up again is a report, not a second set.
    again = _safebus(supervised, "up", "--bootstrap", supervised.settings.bootstrap)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert {w.name: w.pid for w in supervisor.status().workers} == {w.name: w.pid for w in status.workers}

    # (3): SIGKILL the inbox worker; supervisord spawns a replacement, which counts as RUNNING after startsecs.
    inbox = status.worker("inbox")
    assert inbox is not None
    assert inbox.pid is not None
    killed_at = time.monotonic()
    os.kill(inbox.pid, signal.SIGKILL)

    def replacement() -> int | None:
        now = supervisor.status().worker("inbox")
        return now.pid if now is not None and now.pid not in (None, inbox.pid) else None

    new_pid = wait_for(replacement, timeout_s=30, what=f"a new inbox worker\n{supervisor.log_tail()}")
    spawned_s = time.monotonic() - killed_at
    wait_for(lambda: (w := supervisor.status().worker("inbox")) is not None and w.state == "RUNNING"
             and w.pid == new_pid, timeout_s=30, what=f"the new inbox worker RUNNING\n{supervisor.log_tail()}")
    running_s = time.monotonic() - killed_at
    print(f"\ninbox worker SIGKILLed: replacement spawned after {spawned_s:.1f}s, RUNNING after {running_s:.1f}s")

    # (4): the flow completes through the replacement.
    child = Child(first_name="Ivo", surname="Marchbank", date_of_birth=date(2016, 3, 9), present=True,
                  school_urn="900101")
    [event_id] = supervised.publisher().publish([make_incident(child)])
    decisions = wait_for(lambda: supervised.encompass({event_id}), timeout_s=60,
                         what=f"a decision for {event_id}\n{_log(state, 'processor')}")
    [decision] = decisions.values()
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900101")
    alert = wait_for(lambda: supervised.notification("900101", decision.output_id or ""), timeout_s=60,
                     what=f"the alert in the inbox\n{_log(state, 'inbox')}")
    delivered_s = time.monotonic() - killed_at
    assert (alert.child_first_name, alert.child_surname) == ("Ivo", "Marchbank")
    print(f"the alert published after the kill reached the school's inbox {delivered_s:.1f}s after the kill")
    assert (supervisor.status().worker("inbox") or inbox).pid == new_pid  # the replacement stayed up
    assert "exited: inbox (terminated by SIGKILL; not expected)" in supervisor.log_tail(200)

    # (5): down stops every worker and supervisord; no process of this partnership is left.
    workers = _processes_of(state)
    assert new_pid in workers
    assert status.pid is not None
    assert _alive(status.pid)
    stopped = _safebus(supervised, "down")
    assert stopped.returncode == 0, f"{stopped.stdout}{stopped.stderr}"
    assert "supervisord: stopped" in stopped.stdout
    assert _processes_of(state) == set()
    assert not [pid for pid in (*workers, status.pid) if _alive(pid)]
    assert supervisor.status().running is False
    assert _safebus(supervised, "status").returncode == 3

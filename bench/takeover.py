"""
Takeover benchmark: how long the audit sequencer and the deadline monitor are without an active instance.

One run, on one fresh cluster (by default the secured three-node
`LocalCluster`; ``--single`` for one plaintext node), measures:

1. **the floor** - a bare `safebus.leases.Lease` held by a subprocess that is
   killed with SIGKILL, and the time until a second member holds it: what the
   broker's group coordinator alone costs (session timeout plus a rebalance).
   Nothing of ours can take over faster.
2. **the sequencer** - two ``safebus audit sequence`` processes on two state
   directories (two "hosts"), facts flowing all the while (an unsigned record
   on the audit topic every 200 ms, each of which becomes a dead letter and
   then a fact).  The active one is killed with SIGKILL; measured: *takeover*
   (kill to the standby's ``audit_sequencer_leading`` log line, which it writes
   after fencing and catching up) and *resume* (kill to the first leaf the
   new leader appends itself).  The killed one is started again, becomes the
   standby, and in the next round is the one that survives.  Then one SIGTERM
   hand-over (a planned restart).
3. **the monitor** - the same for two ``safebus encompass monitor`` processes
   (takeover: kill to ``monitor_acting``).

Each takeover is also given as a ratio to the floor measured in the same run,
which is more portable between machines than the seconds.  The last line
printed is a JSON object with every number; it is also written to
``bench/results/takeover.json``.

Usage::

    python bench/takeover.py [--rounds N] [--single]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from bench.thin_path import adopt_identity, cache_root, prepare, say
from safebus.app.wiring import Settings
from safebus.deploy.acls import desired_bindings
from safebus.deploy.acls_admin import grant_missing
from safebus.deploy.broker import LocalBroker
from safebus.deploy.cluster import ADMIN_USER, LocalCluster
from safebus.kafka_io import produce_all, reliable_producer
from safebus.leases import Lease
from safebus.records import Output
from safebus.topics import TopicNames

RESULTS = Path(__file__).resolve().parent / "results" / "takeover.json"
AIM_S = 15.0
"""Issue 15's aim for a takeover."""
WAIT_S = 120.0

_HOLDER = """
import pathlib, sys, time
from safebus.leases import Lease
lease = Lease(sys.argv[1], group=sys.argv[2], topic=sys.argv[3]).start()
while not lease.wait_held(1.0):
    pass
pathlib.Path(sys.argv[4]).touch()
time.sleep(3600)
"""


@contextlib.contextmanager
def cluster_target(single: bool, state: Path) -> Iterator[tuple[str, Mapping[str, Mapping[str, str]]]]:
    """(bootstrap, identity by principal) of a fresh broker or secured cluster, stopped after."""
    if single:
        adopt_identity({})
        broker = LocalBroker(state_dir=state / "kafka", cache_dir=cache_root())
        bootstrap = broker.up().bootstrap
        assert bootstrap is not None
        try:
            yield bootstrap, {p: {} for p in ("admin", "sequencer", "monitor")}
        finally:
            broker.down()
        return
    say("· starting a fresh secured 3-node cluster (SASL_SSL/SCRAM-SHA-512, TLS, ACLs)")
    cluster = LocalCluster(state_dir=state / "cluster", cache_dir=cache_root(), nodes=3)
    try:
        bootstrap = cluster.up().bootstrap
        assert bootstrap is not None
        identities = {p: cluster.environment(ADMIN_USER if p == "admin" else p)
                      for p in ("admin", "sequencer", "monitor")}
        yield bootstrap, identities
    finally:
        cluster.down()


def lease_floor(bootstrap: str, names: TopicNames, identity: Mapping[str, str], rounds: int) -> list[float]:
    """Seconds from SIGKILL of a bare lease holder until a second member holds the lease."""
    floors = []
    for n in range(rounds):
        group = f"{names.prefix}-bench-lease-{n}"
        held = Path(tempfile.mkdtemp()) / "held"
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, bootstrap, group, names.checkpoints, str(held)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **identity})
        deadline = time.monotonic() + WAIT_S
        while not held.exists():
            if time.monotonic() > deadline or holder.poll() is not None:
                raise RuntimeError("the lease holder never held its lease")
            time.sleep(0.1)
        follower = Lease(bootstrap, group=group, topic=names.checkpoints).start()
        try:
            time.sleep(5)  # both members in the group, the holder's assignment settled
            holder.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            if not follower.wait_held(WAIT_S):
                raise RuntimeError("the second member never took the lease")
            floors.append(time.monotonic() - killed)
        finally:
            follower.close()
            holder.wait()
        say(f"  floor {n + 1}: {floors[-1]:.2f} s")
    return floors


class Workers:
    """Two instances of one single-writer worker, on two hosts' state directories."""

    def __init__(self, settings: Settings, argv: tuple[str, ...], identity: Mapping[str, str], hosts: dict[str, Path]):
        self.settings = settings
        self.argv = argv
        self.identity = identity
        self.hosts = hosts
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, host: str) -> Path:
        return self.hosts[host] / f"{self.argv[0]}-{host}.log"

    def start(self, host: str) -> None:
        env = {**os.environ, **self.identity, "SAFEBUS_HOME": str(self.hosts[host]),
               "SAFEBUS_TOPIC_PREFIX": self.settings.names.prefix, "SAFEBUS_LOG_LEVEL": "INFO",
               "SAFEBUS_CHECKPOINT_SECONDS": "1"}
        with self.log(host).open("ab") as log:
            self.processes[host] = subprocess.Popen(
                [sys.executable, "-m", "safebus", *self.argv, "--bootstrap", self.settings.bootstrap],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def stop(self, host: str, sig: int) -> None:
        process = self.processes.pop(host)
        process.send_signal(sig)
        process.wait(timeout=60)

    def stop_all(self) -> None:
        for host in list(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(host, signal.SIGTERM)

    def events(self, host: str, event: str) -> list[datetime]:
        """When `host`'s instance logged `event` (every time, in order)."""
        found = []
        path = self.log(host)
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if f'"{event}"' in line and line.startswith("{"):
                with contextlib.suppress(ValueError, KeyError):
                    found.append(datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")))
        return found

    def wait_event(self, host: str, event: str, count: int) -> datetime:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            seen = self.events(host, event)
            if len(seen) >= count:
                return seen[count - 1]
            if self.processes.get(host) is not None and self.processes[host].poll() is not None:
                raise RuntimeError(f"{host} exited; see {self.log(host)}")
            time.sleep(0.1)
        raise RuntimeError(f"{host} never logged {event} ({count}); see {self.log(host)}")


def first_leaf_after(ledger: Path, moment: datetime) -> datetime:
    """When the first leaf appended after `moment` was appended (waiting for it)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if ledger.exists():
            db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT min(appended_at) FROM leaves WHERE appended_at > ?",
                                 (moment.isoformat(),)).fetchone()
            finally:
                db.close()
            if row and row[0]:
                return datetime.fromisoformat(row[0])
        time.sleep(0.1)
    raise RuntimeError(f"no leaf appended after {moment.isoformat()} in {ledger}")


def feed_facts(settings: Settings, stop: threading.Event) -> None:
    """An unsigned record on the audit topic every 200 ms: the sequencer's work never pauses."""
    producer = reliable_producer(settings.bootstrap)
    while not stop.wait(0.2):
        with contextlib.suppress(Exception):
            produce_all(producer, [Output(topic=settings.names.audit, key=b"bench", value=uuid.uuid4().hex.encode())])


def measure_writer(workers: Workers, *, lead_event: str, stand_event: str, rounds: int,
                   ledger_of: Mapping[str, Path] | None) -> dict[str, object]:
    """Kill the active instance `rounds` times (alternating hosts), then hand over once with SIGTERM."""
    leads = {"a": 0, "b": 0}
    stands = {"a": 0, "b": 0}
    workers.start("a")
    leads["a"] += 1
    stands["a"] += 1
    workers.wait_event("a", lead_event, leads["a"])
    workers.start("b")
    stands["b"] += 1
    workers.wait_event("b", stand_event, stands["b"])
    active, standby = "a", "b"
    takeovers: list[float] = []
    resumes: list[float] = []
    for n in range(rounds + 1):
        time.sleep(4)  # the standby caught up, facts flowing
        planned = n == rounds
        killed_at = datetime.now(UTC)
        workers.stop(active, signal.SIGTERM if planned else signal.SIGKILL)
        leads[standby] += 1
        led = workers.wait_event(standby, lead_event, leads[standby])
        took = (led - killed_at).total_seconds()
        resumed = None
        if ledger_of is not None:
            resumed = (first_leaf_after(ledger_of[standby], killed_at) - killed_at).total_seconds()
        label = "SIGTERM hand-over" if planned else f"SIGKILL {n + 1}"
        say(f"  {label}: takeover {took:.2f} s" + (f", resume {resumed:.2f} s" if resumed is not None else ""))
        if planned:
            handover = {"takeover_s": round(took, 2), "resume_s": None if resumed is None else round(resumed, 2)}
            break
        takeovers.append(took)
        if resumed is not None:
            resumes.append(resumed)
        workers.start(active)  # back as the standby
        stands[active] += 1
        workers.wait_event(active, stand_event, stands[active])
        active, standby = standby, active
    workers.stop_all()
    return {"takeover_s": [round(t, 2) for t in takeovers], "takeover_median_s": round(statistics.median(takeovers), 2),
            "takeover_max_s": round(max(takeovers), 2),
            "resume_s": [round(r, 2) for r in resumes],
            "resume_median_s": round(statistics.median(resumes), 2) if resumes else None,
            "sigterm_handover": handover}


def measure_sequencer(settings: Settings, state: Path, identity: Mapping[str, str], rounds: int) -> dict[str, object]:
    """The audit sequencer's takeovers, host B provisioned with the log key host A made."""
    sequencer = Workers(settings, ("audit", "sequence"), identity, {"a": settings.state_dir, "b": state / "seq-b"})
    sequencer.start("a")
    sequencer.wait_event("a", "audit_sequencer_leading", 1)
    shutil.copytree(settings.state_dir, state / "seq-b",
                    ignore=shutil.ignore_patterns("ledger*.sqlite*", "projection.sqlite*", "*.log"))
    sequencer.stop("a", signal.SIGTERM)
    sequencer.log("a").unlink()  # the measured rounds count their own log lines
    ledgers = {h: p / "audit" / settings.names.prefix / "ledger.sqlite" for h, p in sequencer.hosts.items()}
    return measure_writer(sequencer, lead_event="audit_sequencer_leading", stand_event="audit_sequencer_standing_by",
                          rounds=rounds, ledger_of=ledgers)


def measure_monitor(settings: Settings, state: Path, identity: Mapping[str, str], rounds: int) -> dict[str, object]:
    """The deadline monitor's takeovers (host B: the partnership's state, no store of its own)."""
    shutil.copytree(settings.state_dir, state / "mon-b", ignore=shutil.ignore_patterns("encompass", "audit", "*.log"))
    monitor = Workers(settings, ("encompass", "monitor"), identity, {"a": settings.state_dir, "b": state / "mon-b"})
    return measure_writer(monitor, lead_event="monitor_acting", stand_event="monitor_standing_by", rounds=rounds,
                          ledger_of=None)


MEASURES = {"sequencer": measure_sequencer, "monitor": measure_monitor}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="SIGKILLs per worker (default 3)")
    parser.add_argument("--single", action="store_true", help="one plaintext node instead of the secured cluster")
    parser.add_argument("--writers", default="sequencer,monitor", help="which to measure (default both)")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="safebus-takeover-"))
    try:
        with cluster_target(args.single, state) as (bootstrap, identities):
            adopt_identity(identities["admin"])
            names = TopicNames(prefix=f"tk{uuid.uuid4().hex[:8]}")
            settings = prepare(state / "host-a", bootstrap, names)
            if not args.single:
                grant_missing(bootstrap, desired_bindings(settings.store.load_directory(), names))
            say("· the floor: a bare lease, its holder killed")
            floors = lease_floor(bootstrap, names, identities["admin"], args.rounds)
            floor = statistics.median(floors)
            stop = threading.Event()
            feeder = threading.Thread(target=feed_facts, args=(settings, stop), daemon=True)
            feeder.start()
            results: dict[str, object] = {"cluster": "single plaintext node" if args.single else
                                          "secured 3 nodes (SASL_SSL, RF 3, min ISR 2)",
                                          "floor_s": [round(f, 2) for f in floors], "floor_median_s": round(floor, 2)}
            writers = args.writers.split(",")
            try:
                for writer in writers:
                    say(f"· the {writer}")
                    results[writer] = MEASURES[writer](settings, state, identities[writer], args.rounds)
            finally:
                stop.set()
            for writer in writers:
                summary = results[writer]
                assert isinstance(summary, dict)
                summary["takeover_median_over_floor"] = round(summary["takeover_median_s"] / floor, 2)
                summary["within_aim"] = summary["takeover_max_s"] <= AIM_S
    except BaseException:
        say(f"· failed: the hosts' logs are kept in {state}")
        raise
    shutil.rmtree(state, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

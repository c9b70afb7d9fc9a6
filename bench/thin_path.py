"""
Thin-path benchmark: how much of raw Kafka throughput survives sealing, routing and delivery.

One run measures, on the same broker and with the same record size:

1. **raw baseline** - confluent-kafka produce + consume of N opaque records
   whose value is as large as a real sealed incident envelope, through the
   same producer settings and batch flushes the police publisher uses.  This is
   the ceiling: what Kafka alone gives for this record size on this machine.
2. **thin path** - N synthetic incidents sealed and published by
   `PolicePublisher`, routed by the real Faust processor and delivered into the
   school inbox by the inbox worker (both as subprocesses, exactly as
   ``safebus processor run`` / ``safebus inbox run`` start them).  Reported as
   incidents/s (first publish to last inbox delivery) and publish-to-inbox
   latency of every delivered alert.
3. **paced latency** - after the burst, M more incidents are published one at a
   time at a fixed rate through the same workers, and publish-to-inbox latency
   is reported for their alerts alone: the wait on a quiet bus, which the
   burst's queueing-dominated latency does not show.

The ratio of the two says what the bus costs relative to Kafka itself, which is
more portable between machines than either absolute number.

Usage::

    python bench/thin_path.py [--bootstrap HOST:PORT] [--incidents N] [--paced-incidents M] [--paced-rate R]
    python bench/thin_path.py --secure [...]

Without ``--bootstrap`` or ``KAFKA_BOOTSTRAP_SERVERS`` a throw-away local broker
is started in the run's temporary state directory and stopped at the end.  The
last line printed is a JSON object with every number; it is also written to
``bench/results/thin_path.json``.

``--secure`` measures two targets one after the other in the same run, with the
same incidents, seed and sizes: that broker, then a fresh secured three-node
`LocalCluster` (SASL_SSL with SCRAM-SHA-512, TLS between nodes, the
StandardAuthorizer with the partnership's ACLs, topics with three replicas and
``min.insync.replicas`` 2).  What security and replication cost is then one
number, secured ÷ plaintext, measured under the same load on the same machine.
Its JSON (both targets' flat summaries and the ratios) goes to
``bench/results/thin_path_secure.json``; ``thin_path.json`` is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from safebus import kafka_security
from safebus.app.wiring import Settings, build_police_publisher, topics_for
from safebus.clock import utc_now
from safebus.consumers.inbox.store import InboxStore
from safebus.deploy.acls import desired_bindings, managed_principals, plan
from safebus.deploy.acls_admin import apply_plan, current_bindings
from safebus.deploy.broker import LocalBroker
from safebus.deploy.cluster import ADMIN_USER, LocalCluster
from safebus.deploy.supervision import WORKERS as SUPERVISED
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.errors import BrokerError
from safebus.kafka_io import produce_all, reliable_producer

# Every confluent-kafka client of the bench is built from `client_config`, as this process's
# Kafka identity: the same code then measures the plaintext node and the secured cluster, and only
# the SAFEBUS_KAFKA_* environment differs between the two (`adopt_identity`).
from safebus.kafka_security import client_config
from safebus.processors.agreements import load_agreements
from safebus.processors.engine import SharingEngine
from safebus.producers.police import PolicePublisher
from safebus.producers.synthetic import IncidentFactory, create_partnership
from safebus.pseudonyms import Tokeniser
from safebus.records import Output
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.police import DomesticAbuseIncident
from safebus.topics import TopicNames, TopicRole, TopicSpec

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "thin_path.json"
SECURE_RESULTS_PATH = RESULTS_PATH.with_name("thin_path_secure.json")
"""Where ``--secure`` keeps its two-target summary (thin_path.json stays the plain run's)."""
CLUSTER_NODES = 3
ENVELOPE_SAMPLE = 32
"""Sealed incidents measured to choose the raw baseline's record size (their median)."""
RAW_PARTITIONS = 3
"""Same partition count as an ingress topic, so the baseline spreads load the same way."""
WORKER_STOP_TIMEOUT_S = 20.0
WORKERS = ("processor", "inbox")
"""The worker subprocesses, by their ``safebus <name> run`` command."""
SECURITY_VARIABLES = frozenset(kafka_security.VARIABLES.values())
"""Every ``SAFEBUS_KAFKA_*`` variable: a target's identity replaces all of them, never just some."""
PROGRESS_EVERY_S = 5.0

T = TypeVar("T")


def say(line: str) -> None:
    """Print progress immediately (the run is long, and output may be piped)."""
    print(line, flush=True)


# --------------------------------------------------------------------------- time limits


class BenchTimeout(Exception):
    """The run did not finish within its overall time limit."""


@dataclass(frozen=True)
class Deadline:
    """One overall time limit that every wait in the run draws from, so the run can never hang."""

    at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - time.monotonic())

    def check(self, doing: str) -> None:
        """Raise BenchTimeout if the time is up, naming what the run was doing."""
        if self.remaining() <= 0.0:
            raise BenchTimeout(f"overall timeout reached while {doing}")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Command-line choices for one run."""

    bootstrap: str | None
    incidents: int
    batch_size: int
    warmup: int
    paced_incidents: int
    paced_rate: float
    seed: int
    timeout_s: float
    keep: bool
    secure: bool = False
    secure_workers: str = "component"  # "component" or "admin": who the workers are on the secured cluster


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    """Parse the command line; the defaults are the ones results are compared at."""
    parser = argparse.ArgumentParser(
        description="Thin-path benchmark: safebus incidents/s and latency against raw Kafka records/s.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
                        help="Kafka broker (default: $KAFKA_BOOTSTRAP_SERVERS, else start a throw-away local one)")
    parser.add_argument("--incidents", type=int, default=2000, help="incidents (and raw records) to send")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="records per publish call (each call flushes; both phases use it)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="incidents delivered before timing starts, so worker start-up is not measured")
    parser.add_argument("--paced-incidents", type=int, default=200,
                        help="incidents published one at a time after the burst, for quiet-bus latency (0: skip)")
    parser.add_argument("--paced-rate", type=float, default=20.0,
                        help="incidents per second in the paced phase")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic incidents")
    parser.add_argument("--timeout", type=float, default=300.0, help="overall time limit in seconds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's topics and state directory (worker logs) for inspection")
    parser.add_argument("--secure", action="store_true",
                        help="measure twice in one run: the plaintext broker, then a fresh secured 3-node cluster "
                             "(TLS, SCRAM, ACLs, RF 3, min ISR 2); --timeout applies to each")
    parser.add_argument("--secure-workers", choices=("component", "admin"), default="component",
                        help="with --secure: run the workers as their own SCRAM principals under the ACLs "
                             "(router, inbox; the default) or as the cluster's administrator (a super user, "
                             "whom the authorizer does not check)")
    args = parser.parse_args(argv)
    for name in ("incidents", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.paced_incidents < 0:
        parser.error("--warmup and --paced-incidents must be >= 0")
    if args.timeout <= 0 or args.paced_rate <= 0:
        parser.error("--timeout and --paced-rate must be > 0")
    return BenchConfig(bootstrap=args.bootstrap, incidents=args.incidents, batch_size=args.batch_size,
                       warmup=args.warmup, paced_incidents=args.paced_incidents, paced_rate=args.paced_rate,
                       seed=args.seed, timeout_s=args.timeout, keep=args.keep, secure=args.secure,
                       secure_workers=args.secure_workers)


# --------------------------------------------------------------------------- small helpers


def percentile(values: Sequence[float], pct: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default), without numpy."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def milliseconds(seconds: Sequence[float]) -> list[float]:
    """Durations in seconds as milliseconds."""
    return [s * 1000.0 for s in seconds]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def message_value(msg: Message) -> bytes:
    """The value of a consumed message as bytes (confluent-kafka may hand back str or None)."""
    value = msg.value()
    return value.encode() if isinstance(value, str) else (value or b"")


def peak_rss_mib(pid: int) -> float | None:
    """
    Peak resident set size (VmHWM) of a live process in MiB, or None where /proc has no answer.

    Read before the process is stopped: its /proc entry disappears with it.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # the kernel reports kB
    return None


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client that reports warnings but not librdkafka's informational chatter (it clutters the report)."""
    return AdminClient(client_config(bootstrap, log_level=4))  # syslog levels: 4 = warning


def cache_root() -> Path:
    """Where the local broker's jars are cached: $SAFEBUS_CACHE, else the shared temp cache other runs filled."""
    explicit = os.environ.get("SAFEBUS_CACHE")
    return Path(explicit) if explicit else Path(tempfile.gettempdir()) / "sbcache"


# --------------------------------------------------------------------------- record size


def police_publisher(settings: Settings) -> PolicePublisher:
    """The synthetic force's publisher, sealing for the partnership's router."""
    return build_police_publisher(settings)


def sealed_envelope_sizes(publisher: PolicePublisher, seed: int) -> list[int]:
    """
    Sizes of real sealed "schools" incidents, so the raw baseline moves records of the same size.

    Uses its own random stream so the measured incidents are the same whatever the sample size.
    """
    factory = IncidentFactory(random.Random(seed), now=utc_now())
    return sorted(len(publisher.seal_incident(factory.incident("schools")).value) for _ in range(ENVELOPE_SAMPLE))


# --------------------------------------------------------------------------- phase 1: raw baseline


@dataclass(frozen=True, kw_only=True)
class RawResult:
    """Raw Kafka produce + consume of opaque records."""

    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        """End-to-end records per second."""
        return self.records / self.seconds


class CountingConsumer(threading.Thread):
    """
    Consumes a topic in the background and notes when each record arrived.

    A thread (confluent-kafka releases the GIL while it waits) so that consuming
    overlaps producing, as it would between two real services.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, stop: threading.Event) -> None:
        """Assign every partition from the beginning; nothing is consumed until `start`."""
        super().__init__(name="raw-consumer", daemon=True)
        self._consumer = Consumer(client_config(bootstrap, **{
            "group.id": f"{topic}-reader",  # unused: partitions are assigned, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }))
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._halt = stop
        self._seen = threading.Condition()
        self.count = 0
        self.last_at = 0.0  # time.perf_counter() when the latest record arrived
        self.error: BaseException | None = None

    def run(self) -> None:
        """Count records until stopped; remember any failure for the main thread."""
        try:
            while not self._halt.is_set():
                # poll(), not consume(n, timeout): consume waits out its timeout
                # unless n records are ready, which would round the end time up.
                msg = self._consumer.poll(0.1)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerError(f"raw consumer: {error}")
                with self._seen:
                    self.last_at = time.perf_counter()
                    self.count += 1
                    self._seen.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            with self._seen:
                self.error = exc
                self._seen.notify_all()
        finally:
            self._consumer.close()

    def wait_for(self, count: int, deadline: Deadline, doing: str) -> float:
        """Block until `count` records have arrived; return when the last of them did."""
        with self._seen:
            self._seen.wait_for(lambda: self.count >= count or self.error is not None, timeout=deadline.remaining())
            if self.error is not None:
                raise self.error
            if self.count < count:
                raise BenchTimeout(f"overall timeout reached while {doing} ({self.count}/{count} consumed)")
            return self.last_at


def create_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    """
    Create one topic (the broker never auto-creates) and wait until every partition has a leader.

    Through `apply_topics`, so it is replicated exactly like the bus's own topics
    (one copy on a single node; three, two in sync, on the cluster): the
    baseline must pay for replication too, or the ratio would flatter Kafka.
    """
    apply_topics(bootstrap, [TopicSpec(name=name, role=TopicRole.INGRESS, partitions=partitions)],
                 timeout_s=timeout_s)


def run_raw_baseline(
    bootstrap: str, topic: str, *, records: int, value_size: int, batch_size: int, seed: int, deadline: Deadline,
) -> RawResult:
    """
    Produce and consume `records` opaque values of `value_size` bytes; time first produce to last consume.

    The producer is the project's `reliable_producer` and each batch goes through
    `produce_all` (which flushes), exactly as `PolicePublisher.publish` sends
    incidents, so the ratio isolates sealing, routing and delivery rather than
    a difference in producer settings.  One record per partition is sent and
    consumed first, so connection set-up and offset lookup are not timed.
    """
    create_topic(bootstrap, topic, RAW_PARTITIONS)
    value = random.Random(seed).randbytes(value_size)
    producer = reliable_producer(bootstrap)
    stop = threading.Event()
    consumer = CountingConsumer(bootstrap, topic, RAW_PARTITIONS, stop)
    consumer.start()
    try:
        for partition in range(RAW_PARTITIONS):
            producer.client.produce(topic, value=value, key=b"warm-up", partition=partition)
        if producer.flush(deadline.remaining()):
            raise BenchTimeout("overall timeout reached while warming up the raw producer")
        consumer.wait_for(RAW_PARTITIONS, deadline, "warming up the raw consumer")

        outputs = [Output(topic=topic, key=f"NDP-raw-{i:06d}".encode(), value=value) for i in range(records)]
        started = time.perf_counter()
        for batch in batches(outputs, batch_size):
            deadline.check("producing raw records")
            produce_all(producer, list(batch))
        finished = consumer.wait_for(RAW_PARTITIONS + records, deadline, "consuming raw records")
    finally:
        stop.set()
        consumer.join(timeout=10.0)
    return RawResult(records=records, seconds=finished - started)


# --------------------------------------------------------------------------- phase 2: thin path


class Workers:
    """
    The processor and inbox worker as subprocesses, started like ``safebus ... run`` would be.

    Separate processes, as in production, so the processor's memory can be read
    from /proc and nothing in this process (GIL, event loop) flatters the numbers.
    """

    def __init__(self, settings: Settings, identity: Callable[[str], Mapping[str, str]]) -> None:
        """
        Start both workers; their output goes to <state dir>/logs/<name>.log.

        `identity` gives each worker (by name) its ``SAFEBUS_KAFKA_*`` variables;
        any this process inherited are dropped first, so a worker is exactly who
        `identity` says and never whoever happened to be exported in the shell.
        """
        self.logs = settings.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k not in SECURITY_VARIABLES}
        base |= {"SAFEBUS_HOME": str(settings.state_dir), "SAFEBUS_TOPIC_PREFIX": settings.names.prefix}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in WORKERS:
                env = {**base, **identity(name)}
                with (self.logs / f"{name}.log").open("ab") as log:
                    self.processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "safebus", name, "run", "--bootstrap", settings.bootstrap],
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                        cwd=settings.state_dir,  # Faust writes its "<app id>-data" directory here
                    )
        except BaseException:
            self.stop()
            raise

    def check_alive(self) -> None:
        """Fail fast, pointing at the log, if a worker has exited: waiting on it would only time out."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"the {name} worker exited with status {code}; see {self.logs / f'{name}.log'}")

    def peak_rss_mib(self, name: str) -> float | None:
        """Peak RSS of one worker, read while it still runs."""
        return peak_rss_mib(self.processes[name].pid)

    def stop(self) -> None:
        """SIGTERM every worker (they shut down cleanly on it), then SIGKILL any that will not stop."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WORKER_STOP_TIMEOUT_S)


class AuditTail:
    """
    Reads sharing decisions from the audit topic incrementally.

    Decisions link each incident (event id) to the notification ids it caused
    (output id), which is how a delivered alert is traced back to the publish
    of its incident.  Police references would also work but are random, so two
    incidents may share one; event ids cannot collide.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        """Assign every audit partition from the beginning (no group, no commits)."""
        self._consumer = Consumer(client_config(bootstrap, **{
            "group.id": f"{topic}-bench-reader",  # unused: partitions are assigned, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }))
        info = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None:
            self._consumer.close()
            raise BrokerError(f"audit topic {topic} does not exist")
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions])

    def poll(self, timeout_s: float) -> list[SharingDecision]:
        """Decisions that arrived since the last call (waiting at most `timeout_s` for the first)."""
        decisions = []
        for msg in self._consumer.consume(num_messages=1000, timeout=timeout_s):
            error = msg.error()
            if error is None:
                if b"audit.sharing-decision" in message_value(msg):  # the audit topic also holds erasures
                    decisions.append(SharingDecision.model_validate_json(message_value(msg)))
            elif error.code() != KafkaError._PARTITION_EOF:
                raise BrokerError(f"reading audit decisions: {error}")
        return decisions

    def close(self) -> None:
        """Leave the broker."""
        self._consumer.close()


@dataclass
class Flow:
    """What has been seen so far of one set of published incidents, until every alert is in an inbox."""

    published_at: dict[str, float]  # event id -> epoch seconds its batch was acknowledged
    decisions_due: int  # one per (agreement, subject): what the engine decides for these incidents
    decisions: set[str] = field(default_factory=set)  # decision ids (receivers may see duplicates)
    alert_event: dict[str, str] = field(default_factory=dict)  # notification id -> event id
    decided_at: dict[str, float] = field(default_factory=dict)  # notification id -> epoch seconds of its decision
    last_decided_at: float = 0.0  # epoch seconds of the latest decision of any outcome
    received_at: dict[str, float] = field(default_factory=dict)  # notification id -> epoch seconds

    def add(self, decision: SharingDecision) -> None:
        """Record one audit decision if it belongs to this flow."""
        if decision.about_event_id not in self.published_at:
            return
        self.decisions.add(decision.decision_id)
        decided_at = decision.occurred_at.timestamp()
        self.last_decided_at = max(self.last_decided_at, decided_at)
        if decision.outcome is Outcome.SHARED and decision.recipient_kind == "school" and decision.output_id:
            self.alert_event[decision.output_id] = decision.about_event_id
            self.decided_at[decision.output_id] = decided_at

    def undelivered(self) -> list[str]:
        """Notification ids decided on but not yet seen in the inbox."""
        return [nid for nid in self.alert_event if nid not in self.received_at]

    def complete(self) -> bool:
        """Every incident fully routed and every resulting alert delivered."""
        return len(self.decisions) >= self.decisions_due and not self.undelivered()

    def status(self) -> str:
        """One-line progress."""
        return (f"routed {len(self.decisions)}/{self.decisions_due} decisions, "
                f"delivered {len(self.received_at)}/{len(self.alert_event)} alerts")

    def latencies_s(self) -> list[float]:
        """Publish-to-inbox latency of every delivered alert."""
        return [at - self.published_at[self.alert_event[nid]] for nid, at in self.received_at.items()]

    def route_latencies_s(self) -> list[float]:
        """Publish-to-routing-decision part of each delivered alert's latency: says which worker is the queue."""
        return [self.decided_at[nid] - self.published_at[self.alert_event[nid]] for nid in self.received_at]


_COUNTER: list[SharingEngine] = []


def decision_count(incident: DomesticAbuseIncident) -> int:
    """How many decisions the router makes about `incident`: one per agreement and subject, whatever its state."""
    if not _COUNTER:
        with tempfile.TemporaryDirectory() as scratch:
            store = PartnershipStore(Path(scratch))
            create_partnership(store)
            _COUNTER.append(SharingEngine(agreements=load_agreements(), directory=store.load_directory(),
                                          tokeniser=Tokeniser(b"k" * 32)))
    return len(_COUNTER[0].route(incident, decided_at=utc_now()).decisions)


def publish(publisher: PolicePublisher, incidents: list[DomesticAbuseIncident], batch_size: int,
            deadline: Deadline, *, interval_s: float = 0.0) -> tuple[float, Flow]:
    """
    Publish `incidents` in batches; return the wall-clock start and the flow to wait for.

    Batches go back to back, or with `interval_s` one starts every `interval_s`
    seconds on a fixed schedule (a late batch goes at once; the schedule does not drift).
    """
    published_at: dict[str, float] = {}
    started = time.time()
    schedule_from = time.monotonic()
    for index, batch in enumerate(batches(incidents, batch_size)):
        deadline.check("publishing incidents")
        if interval_s:
            time.sleep(max(0.0, schedule_from + index * interval_s - time.monotonic()))
        event_ids = publisher.publish(list(batch))
        # publish() returns after flushing, so the broker holds every record of
        # the batch by now: this instant is an upper bound on each record's
        # publish time, and latencies are understated by at most one batch's
        # seal-and-flush time.  Wall clock, as the inbox worker's received_at is.
        acked = time.time()
        published_at.update(dict.fromkeys(event_ids, acked))
    return started, Flow(published_at=published_at, decisions_due=sum(decision_count(i) for i in incidents))


def wait_for_delivery(flow: Flow, *, audit: AuditTail, inbox: InboxStore, workers: Workers, deadline: Deadline,
                      label: str) -> None:
    """Follow audit decisions and the inbox until `flow` is complete, reporting progress every few seconds."""
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while not flow.complete():
        deadline.check(f"waiting for the {label} ({flow.status()})")
        workers.check_alive()
        for decision in audit.poll(timeout_s=min(0.5, deadline.remaining())):
            flow.add(decision)
        undelivered = flow.undelivered()
        if undelivered:
            for nid, at in inbox.received_at(undelivered).items():
                flow.received_at[nid] = at.timestamp()
        if time.monotonic() >= next_report:
            say(f"    {label}: {flow.status()}")
            next_report += PROGRESS_EVERY_S


@dataclass(frozen=True, kw_only=True)
class ThinResult:
    """The thin path's throughput and latency."""

    incidents: int
    decisions: int
    alerts: int
    seconds: float
    routed_seconds: float  # first publish to the last routing decision
    latencies_ms: list[float]
    route_latencies_ms: list[float]
    paced_seconds: float  # start of the paced publishing to its last acknowledgement (0 when skipped)
    paced_latencies_ms: list[float]  # the paced phase's alerts only (empty when it was skipped)
    paced_route_latencies_ms: list[float]
    processor_peak_rss_mib: float | None
    inbox_peak_rss_mib: float | None

    @property
    def per_second(self) -> float:
        """Incidents per second, first publish to last inbox delivery."""
        return self.incidents / self.seconds


def run_thin_path(settings: Settings, publisher: PolicePublisher, config: BenchConfig, deadline: Deadline,
                  identity: Callable[[str], Mapping[str, str]]) -> ThinResult:
    """
    Warm the workers up, publish the measured incidents and wait until every alert is in an inbox; then the paced ones.

    The warm-up incidents go through the whole path first, so the Faust worker's
    start-up and both consumer-group joins are over before the clock starts.
    The paced phase starts only once the burst is fully delivered, so nothing
    it measures queues behind the burst.
    """
    factory = IncidentFactory(random.Random(config.seed), now=utc_now())
    warmup = [factory.incident("schools") for _ in range(config.warmup)]
    measured = [factory.incident("schools") for _ in range(config.incidents)]
    paced = [factory.incident("schools") for _ in range(config.paced_incidents)]  # after: burst stays the same

    with contextlib.ExitStack() as cleanup:  # unwinds in reverse: inbox, audit reader, then the workers
        workers = Workers(settings, identity)
        cleanup.callback(workers.stop)
        audit = AuditTail(settings.bootstrap, settings.names.audit)
        cleanup.callback(audit.close)
        inbox = InboxStore(settings.inbox_path)
        cleanup.callback(inbox.close)
        say(f"· workers started (pids processor={workers.processes['processor'].pid}, "
            f"inbox={workers.processes['inbox'].pid}); warming up with {config.warmup} incident(s)")
        if warmup:
            _, flow = publish(publisher, warmup, config.batch_size, deadline)
            wait_for_delivery(flow, audit=audit, inbox=inbox, workers=workers, deadline=deadline,
                              label="warm-up")
        say(f"· thin path: publishing {config.incidents} incidents in batches of {config.batch_size}")
        started, flow = publish(publisher, measured, config.batch_size, deadline)
        wait_for_delivery(flow, audit=audit, inbox=inbox, workers=workers, deadline=deadline,
                          label="thin path")
        paced_flow, paced_seconds = None, 0.0
        if paced:
            say(f"· paced: publishing {len(paced)} incidents one at a time at {config.paced_rate:g}/s")
            paced_started, paced_flow = publish(publisher, paced, 1, deadline, interval_s=1.0 / config.paced_rate)
            paced_seconds = max(paced_flow.published_at.values()) - paced_started
            wait_for_delivery(paced_flow, audit=audit, inbox=inbox, workers=workers, deadline=deadline,
                              label="paced")
        processor_rss, inbox_rss = workers.peak_rss_mib("processor"), workers.peak_rss_mib("inbox")
    return ThinResult(
        incidents=len(measured), decisions=len(flow.decisions), alerts=len(flow.received_at),
        seconds=max(flow.received_at.values()) - started, routed_seconds=flow.last_decided_at - started,
        latencies_ms=milliseconds(flow.latencies_s()), route_latencies_ms=milliseconds(flow.route_latencies_s()),
        paced_seconds=paced_seconds,
        paced_latencies_ms=milliseconds(paced_flow.latencies_s()) if paced_flow else [],
        paced_route_latencies_ms=milliseconds(paced_flow.route_latencies_s()) if paced_flow else [],
        processor_peak_rss_mib=processor_rss, inbox_peak_rss_mib=inbox_rss,
    )


# --------------------------------------------------------------------------- setup and clean-up


def is_run_topic(topic: str, prefix: str) -> bool:
    """Whether `topic` belongs to the run with `prefix` (bus topics use "prefix.", Faust's "prefix-router")."""
    return topic.startswith((f"{prefix}.", f"{prefix}-"))


def run_groups(prefix: str) -> list[str]:
    """
    The consumer groups the workers join under `prefix`.

    The router's is its Faust app id (``safebus processor run``); the inbox
    worker's is set in ``safebus.app.wiring.build_inbox_worker``.
    """
    return [f"{prefix}-router", f"{prefix}-school-inbox"]


def prepare(state_dir: Path, bootstrap: str, names: TopicNames) -> Settings:
    """
    Create a fresh synthetic partnership and apply its topics under `names`' prefix.

    Refuses a prefix that already has topics: clean-up deletes every topic with
    the prefix, which must only ever be this run's own.
    """
    admin = admin_client(bootstrap)
    clashing = [t for t in admin.list_topics(timeout=30).topics if is_run_topic(t, names.prefix)]
    if clashing:
        raise BrokerError(f"topics with prefix {names.prefix!r} already exist ({clashing[0]}, ...); choose another")
    settings = Settings(state_dir=state_dir, bootstrap=bootstrap, names=names)
    create_partnership(settings.store)
    apply_topics(bootstrap, topics_for(settings))
    return settings


def delete_run_topics(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> None:
    """Delete this run's topics and consumer groups, so repeated runs do not litter a shared broker."""
    admin = admin_client(bootstrap)
    topics = [t for t in admin.list_topics(timeout=timeout_s).topics if is_run_topic(t, prefix)]
    futures = {**(admin.delete_topics(topics, operation_timeout=timeout_s) if topics else {}),
               **admin.delete_consumer_groups(run_groups(prefix), request_timeout=timeout_s)}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:  # the worker never joined: nothing to delete
                say(f"  (clean-up: could not delete {name}: {exc})")


def replication_of(bootstrap: str, topics: Sequence[str], timeout_s: float = 30.0) -> dict[str, object]:
    """
    How the run's topics are replicated, read back from the broker rather than assumed.

    The lowest replica count and ``min.insync.replicas`` over `topics`, and the
    broker count: the secured numbers mean something only if the cluster really
    kept three copies with two in sync.
    """
    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=timeout_s)
    replicas = min(len(p.replicas) for t in topics for p in metadata.topics[t].partitions.values())
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    min_isr = min(int(future.result(timeout=timeout_s)["min.insync.replicas"].value)
                  for future in admin.describe_configs(resources, request_timeout=timeout_s).values())
    return {"brokers": len(metadata.brokers), "replication_factor": replicas, "min_insync_replicas": min_isr}


# --------------------------------------------------------------------------- targets: where, and as whom


def adopt_identity(identity: Mapping[str, str]) -> None:
    """
    Make `identity` (``SAFEBUS_KAFKA_*`` variables) this process's Kafka identity, replacing every one before.

    Through the environment and `kafka_security.use(None)`, the way an operator
    gives a process its identity, so every client built afterwards (the bench's
    own, the publisher's producer, `apply_topics`) presents it.  Clients built
    before keep the old one, which is why each target builds all of its own.
    """
    for name in SECURITY_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(identity)
    kafka_security.use(None)


@dataclass(frozen=True, kw_only=True)
class Target:
    """One broker the run measures, and the identities this process and the workers use on it."""

    name: str  # "plaintext" or "secured": the key of its numbers in the secure summary
    bootstrap: str
    local: bool  # started (and stopped) by this run, so its topics need no deleting
    identity: Mapping[str, str]  # this process's SAFEBUS_KAFKA_* variables on the target
    worker_identity: Callable[[str], Mapping[str, str]]  # each worker's, by worker name
    provision: Callable[[Settings], None] | None = None  # after the run's topics exist, before workers start


@contextlib.contextmanager
def plaintext_target(config: BenchConfig, state_dir: Path) -> Iterator[Target]:
    """
    The broker of a plain run: `config.bootstrap` as whoever the shell says, else a throw-away local node.

    The local node is PLAINTEXT, so any ``SAFEBUS_KAFKA_*`` the shell exported
    is dropped for it (it would only be refused); a broker passed in keeps the
    shell's identity, as before.
    """
    if config.bootstrap is not None:
        inherited = {k: v for k, v in os.environ.items() if k in SECURITY_VARIABLES}
        yield Target(name="plaintext", bootstrap=config.bootstrap, local=False, identity=inherited,
                     worker_identity=lambda _name: inherited)
        return
    say("· no --bootstrap or KAFKA_BOOTSTRAP_SERVERS: starting a throw-away local broker")
    adopt_identity({})  # LocalBroker.up's readiness probe is a client too
    broker = LocalBroker(state_dir=state_dir, cache_dir=cache_root())
    try:
        bootstrap = broker.up().bootstrap
        assert bootstrap is not None
        yield Target(name="plaintext", bootstrap=bootstrap, local=True, identity={},
                     worker_identity=lambda _name: {})
    finally:
        broker.down()


@contextlib.contextmanager
def secured_target(state_dir: Path, *, workers_as_admin: bool) -> Iterator[Target]:
    """
    A fresh secured `LocalCluster` (TLS, SCRAM-SHA-512, ACLs, RF 3 / min ISR 2), stopped when done.

    Fresh, not reused, so nothing another run left (topics, groups, a warm page
    cache of its logs) flatters or burdens the numbers.  This process is the
    cluster's administrator: it creates the topics and ACLs and reads the audit
    topic.  The workers are who `worker_identity` says.
    """
    say(f"· starting a fresh secured {CLUSTER_NODES}-node cluster (SASL_SSL/SCRAM-SHA-512, TLS, ACLs)")
    cluster = LocalCluster(state_dir=state_dir, cache_dir=cache_root(), nodes=CLUSTER_NODES)
    try:
        bootstrap = cluster.up().bootstrap
        assert bootstrap is not None
        yield Target(name="secured", bootstrap=bootstrap, local=True, identity=cluster.environment(ADMIN_USER),
                     worker_identity=lambda name: worker_identity(cluster, name, as_admin=workers_as_admin),
                     provision=lambda settings: provision_workers(cluster, settings, with_users=not workers_as_admin))
    finally:
        cluster.down()


# ----- THE SWITCH POINT: who the workers are on the secured cluster ---------------------------------------------

WORKER_PRINCIPALS = {w.name: w.principal for w in SUPERVISED if w.name in WORKERS}
"""Each worker's component principal, as ``safebus up`` gives it (`safebus.deploy.supervision.WORKERS`)."""


def worker_identity(cluster: LocalCluster, name: str, *, as_admin: bool = False) -> dict[str, str]:
    """
    The ``SAFEBUS_KAFKA_*`` variables worker `name` ("processor", "inbox") runs with on the secured cluster.

    The one place that decides it.  By default the worker's component principal
    (``router``, ``inbox``), as ``safebus up`` runs it: the SCRAM user
    ``broker up --secure`` made for the component, so the authorizer checks
    every request against the partnership's ACLs.  ``as_admin``
    (``--secure-workers admin``) runs it as the cluster's administrator instead:
    a super user, whom the authorizer waves through, which isolates what the
    ACL checks cost.
    """
    if as_admin:
        return cluster.environment(ADMIN_USER)
    return cluster.environment(WORKER_PRINCIPALS[name])


def provision_workers(cluster: LocalCluster, settings: Settings, *, with_users: bool) -> None:
    """
    Grant the partnership's least-privilege ACLs, as ``safebus acls apply`` would, and add the workers' users.

    The ACLs are applied even when the workers run as the administrator, so the
    authorizer holds a partnership's real binding set, not an empty one.
    `with_users` reports the workers' component principals.
    """
    directory = settings.store.load_directory()
    desired = desired_bindings(directory, settings.names)
    changes = plan(desired, current_bindings(settings.bootstrap), managed=managed_principals(directory))
    apply_plan(settings.bootstrap, changes)
    say(f"· ACLs applied: {len(changes.create)} binding(s) for {len(managed_principals(directory))} principal(s)")
    if with_users:  # their SCRAM users exist from the cluster's start (LocalCluster makes one per component)
        say(f"· worker principals: {', '.join(f'{w} as User:{WORKER_PRINCIPALS[w]}' for w in WORKERS)}")


# --------------------------------------------------------------------------- one target


def measure(config: BenchConfig, target: Target, state_dir: Path, prefix: str) -> dict[str, object]:
    """
    Both phases on one target, as its identity, with its own deadline; return its flat summary.

    A broker the run did not start has the run's topics and groups deleted
    afterwards (unless ``--keep``); a local one is stopped by its target.
    """
    adopt_identity(target.identity)
    deadline = Deadline.after(config.timeout_s)
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        security = kafka_security.current_security().security_protocol.value
        say(f"safebus thin-path benchmark [{target.name}]: {config.incidents} incidents "
            f"(+{config.paced_incidents} paced), broker {target.bootstrap} ({security}), prefix {prefix}")
        settings = prepare(state_dir, target.bootstrap, TopicNames(prefix=prefix))
        if target.provision is not None:
            target.provision(settings)

        publisher = police_publisher(settings)
        sizes = sealed_envelope_sizes(publisher, seed=config.seed + 1)
        size = int(percentile(sizes, 50))
        say(f"· sealed incident envelope: {size} B (median of {len(sizes)}, {sizes[0]}-{sizes[-1]})")

        raw_topic = f"{prefix}.bench.raw"
        raw = run_raw_baseline(target.bootstrap, raw_topic, records=config.incidents, value_size=size,
                               batch_size=config.batch_size, seed=config.seed, deadline=deadline)
        say(f"· raw baseline: {raw.records} records in {raw.seconds:.3f} s")

        thin = run_thin_path(settings, publisher, config, deadline, target.worker_identity)
        replication = replication_of(target.bootstrap, [raw_topic, *(t.name for t in topics_for(settings))])
        principals = {w: target.worker_identity(w).get(kafka_security.VARIABLES["username"]) for w in WORKERS}
        return summarise(config, target.bootstrap, target.local, prefix, sizes, raw, thin,
                         security_protocol=security, worker_principals=principals, **replication)
    finally:
        if not target.local and not config.keep:
            with contextlib.suppress(KafkaException, BrokerError, TimeoutError):
                delete_run_topics(target.bootstrap, prefix)


# --------------------------------------------------------------------------- report


def summarise(config: BenchConfig, bootstrap: str, local_broker: bool, prefix: str, sizes: list[int],
              raw: RawResult, thin: ThinResult, **target: object) -> dict[str, object]:
    """
    Every number of the run in one flat JSON-ready object, so runs are easy to diff and plot.

    `target` adds what describes the broker (security protocol, brokers, replication).
    """
    return {
        "bench": "thin_path",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bootstrap": bootstrap,
        "local_broker": local_broker,
        **target,
        "prefix": prefix,
        "incidents": config.incidents,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "envelope_bytes": int(percentile(sizes, 50)),
        "envelope_bytes_min": sizes[0],
        "envelope_bytes_max": sizes[-1],
        "raw_records": raw.records,
        "raw_seconds": round(raw.seconds, 4),
        "raw_records_per_s": round(raw.per_second, 1),
        "thin_incidents": thin.incidents,
        "thin_decisions": thin.decisions,
        "thin_alerts": thin.alerts,
        "thin_seconds": round(thin.seconds, 4),
        "thin_incidents_per_s": round(thin.per_second, 1),
        "thin_alerts_per_s": round(thin.alerts / thin.seconds, 1),
        "ratio_thin_to_raw": round(thin.per_second / raw.per_second, 4),
        **latency_stats("latency", thin.latencies_ms),
        "router_seconds": round(thin.routed_seconds, 4),
        "router_incidents_per_s": round(thin.incidents / thin.routed_seconds, 1),
        **latency_stats("route_latency", thin.route_latencies_ms),
        "paced_incidents": config.paced_incidents,
        "paced_rate_per_s": config.paced_rate,
        "paced_alerts": len(thin.paced_latencies_ms),
        "paced_publish_seconds": round(thin.paced_seconds, 4),
        **latency_stats("paced_latency", thin.paced_latencies_ms),
        **latency_stats("paced_route_latency", thin.paced_route_latencies_ms),
        "processor_peak_rss_mib": _round_or_none(thin.processor_peak_rss_mib),
        "inbox_peak_rss_mib": _round_or_none(thin.inbox_peak_rss_mib),
    }


def _round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def latency_stats(name: str, values_ms: Sequence[float]) -> dict[str, float | None]:
    """`<name>_p50_ms`, `_p95_ms`, `_p99_ms` and `_max_ms` of `values_ms`; None each if there are none."""
    stats = {"p50": percentile(values_ms, 50), "p95": percentile(values_ms, 95), "p99": percentile(values_ms, 99),
             "max": max(values_ms)} if values_ms else dict.fromkeys(("p50", "p95", "p99", "max"))
    return {f"{name}_{stat}_ms": _round_or_none(value) for stat, value in stats.items()}


CROSS_RATIOS = ("raw_records_per_s", "thin_incidents_per_s", "ratio_thin_to_raw", "router_incidents_per_s",
                "latency_p50_ms", "latency_p95_ms", "paced_latency_p50_ms", "paced_latency_p95_ms")
"""The numbers compared secured ÷ plaintext: below 1 for throughput is the cost of security; above 1 for latency."""


def cross_ratios(plaintext: Mapping[str, object], secured: Mapping[str, object]) -> dict[str, float | None]:
    """Secured ÷ plaintext for each of `CROSS_RATIOS` (None where either side has no number, or it is 0)."""
    ratios: dict[str, float | None] = {}
    for key in CROSS_RATIOS:
        a, b = secured.get(key), plaintext.get(key)
        ratios[key] = round(a / b, 4) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    return ratios


def secure_summary(config: BenchConfig, plaintext: dict[str, object], secured: dict[str, object]) -> dict[str, object]:
    """The two targets' flat summaries side by side, and the secured ÷ plaintext ratios."""
    return {
        "bench": "thin_path_secure",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "incidents": config.incidents,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "paced_incidents": config.paced_incidents,
        "paced_rate_per_s": config.paced_rate,
        "plaintext": plaintext,
        "secured": secured,
        "secured_to_plaintext": cross_ratios(plaintext, secured),
    }


def describe(summary: Mapping[str, object]) -> list[str]:
    """The headline numbers of one target's summary, for the terminal."""
    lines = [
        f"broker       : {summary['bootstrap']} ({summary.get('security_protocol')}, "
        f"{summary.get('brokers')} broker(s), topics RF {summary.get('replication_factor')}, "
        f"min ISR {summary.get('min_insync_replicas')}; workers as {summary.get('worker_principals')})",
        f"raw baseline : {summary['raw_records_per_s']} records/s "
        f"({summary['raw_records']} x {summary['envelope_bytes']} B in {summary['raw_seconds']} s)",
        f"thin path    : {summary['thin_incidents_per_s']} incidents/s "
        f"({summary['thin_incidents']} incidents, {summary['thin_alerts']} alerts in {summary['thin_seconds']} s)",
        f"ratio        : {summary['ratio_thin_to_raw']} (thin-path incidents/s / raw records/s)",
        f"latency      : p50 {summary['latency_p50_ms']} ms, p95 {summary['latency_p95_ms']} ms, "
        f"p99 {summary['latency_p99_ms']} ms (publish to inbox, whole batch published at once)",
        f"  of which   : publish to routing decision p50 {summary['route_latency_p50_ms']} ms, "
        f"p99 {summary['route_latency_p99_ms']} ms; router alone {summary['router_incidents_per_s']} incidents/s",
    ]
    if summary["paced_incidents"]:
        lines += [
            f"paced latency: p50 {summary['paced_latency_p50_ms']} ms, p95 {summary['paced_latency_p95_ms']} ms, "
            f"p99 {summary['paced_latency_p99_ms']} ms, max {summary['paced_latency_max_ms']} ms (publish to inbox, "
            f"{summary['paced_incidents']} incidents one at a time at {summary['paced_rate_per_s']}/s, "
            f"{summary['paced_alerts']} alerts)",
            f"  of which   : publish to routing decision p50 {summary['paced_route_latency_p50_ms']} ms, "
            f"p99 {summary['paced_route_latency_p99_ms']} ms",
        ]
    else:
        lines.append("paced latency: not measured (--paced-incidents 0)")
    lines.append(f"processor RSS: peak {summary['processor_peak_rss_mib']} MiB "
                 f"(inbox worker {summary['inbox_peak_rss_mib']} MiB)")
    return lines


def keep(summary: Mapping[str, object], path: Path) -> None:
    """Print `summary` as the run's last line and keep it in `path` (bench/results/)."""
    line = json.dumps(summary, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
    print(line, flush=True)


def report(summary: dict[str, object]) -> None:
    """Print the headline numbers, then the JSON line, and keep the JSON in bench/results/thin_path.json."""
    say("")
    for line in describe(summary):
        say(line)
    keep(summary, RESULTS_PATH)


def report_secure(summary: dict[str, object]) -> None:
    """Each target's headline numbers, the secured ÷ plaintext ratios, then the JSON (thin_path_secure.json)."""
    for name in ("plaintext", "secured"):
        target = summary[name]
        assert isinstance(target, dict)
        say("")
        say(f"== {name}")
        for line in describe(target):
            say(line)
    cross = summary["secured_to_plaintext"]
    assert isinstance(cross, dict)
    say("")
    say("== secured / plaintext")
    say(f"raw records/s    : {cross['raw_records_per_s']}")
    say(f"thin incidents/s : {cross['thin_incidents_per_s']}")
    say(f"thin/raw ratio   : {cross['ratio_thin_to_raw']}")
    say(f"latency p50, p95 : {cross['latency_p50_ms']}, {cross['latency_p95_ms']} (burst); "
        f"{cross['paced_latency_p50_ms']}, {cross['paced_latency_p95_ms']} (paced)")
    keep(summary, SECURE_RESULTS_PATH)


# --------------------------------------------------------------------------- main


def run(config: BenchConfig) -> int:
    """
    Measure the plaintext target (and with ``--secure`` then the secured cluster), clean up, report.

    The targets run one after the other, never together: on a small machine two
    brokers at once would each measure the other's load.  Same incidents, seed
    and sizes on both; each has its own state directory, identity and deadline.
    """
    prefix = f"bench{int(time.time())}"
    state_dir = Path(tempfile.mkdtemp(prefix="safebus-bench-"))
    summaries: dict[str, dict[str, object]] = {}
    finished = False
    try:
        plain_dir = state_dir / "plaintext" if config.secure else state_dir
        with plaintext_target(config, plain_dir) as target:
            summaries[target.name] = measure(config, target, plain_dir, prefix)
        if config.secure:
            with secured_target(state_dir / "secured", workers_as_admin=config.secure_workers == "admin") as target:
                summaries[target.name] = measure(config, target, state_dir / "secured", prefix)
        finished = True
    except BenchTimeout as exc:
        say(f"TIMEOUT: {exc}")
    finally:
        # Clean up before reporting, so the JSON line is the last thing printed.
        if finished and not config.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            say(f"· state directory (worker logs in logs/) kept at {state_dir}")
    if not finished:
        return 1
    if config.secure:
        report_secure(secure_summary(config, summaries["plaintext"], summaries["secured"]))
    else:
        report(summaries["plaintext"])
    return 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does, so the brokers and workers it started are stopped, not orphaned."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # their JVMs run in sessions of their own: only we stop them
    return run(config)


if __name__ == "__main__":
    sys.exit(main())

"""
A single-node Apache Kafka broker (KRaft) run from jars resolved with Maven.

This machine class has Java and Maven but no Docker engine, and Debian ships no
Kafka broker, so the project fetches the broker's runtime jars from the Maven
repository Maven is configured with (``deploy/kafka/pom.xml``) and runs
``kafka.Kafka`` itself.  Everything the broker writes lives in one state
directory::

    <state>/broker/
        server.properties   generated each start, on the ports broker.json remembers
        log4j2.properties   broker logging, to broker.log
        data/               KRaft metadata and topic data
        broker.json         pid, bootstrap address and controller port (kept across down/up)
        broker.log          the broker's own log

The jars are cached under ``<cache>/kafka/<version>/`` so a second start needs
no network.  `LocalBroker.up()` is idempotent: a running, reachable broker is
reused as it is.

A restarted broker comes back on the ports it had (docs/adr/0002): every
client, worker and configuration file that learned the bootstrap address keeps
working after ``broker down``/``up`` and simply reconnects.  New ports are
picked only when a remembered one is taken by something else, and that is
logged, because every client must then be pointed at the new address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from safebus.errors import BrokerError
from safebus.kafka_security import client_config
from safebus.limits import BROKER_MESSAGE_MAX_BYTES
from safebus.logs import get_logger

__all__ = [
    "KAFKA_VERSION",
    "BrokerStatus",
    "LocalBroker",
    "choose_ports",
    "ensure_jars",
    "free_port",
    "is_reachable",
    "port_is_free",
]

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release the project runs; keep in step with ``kafka/pom.xml``."""

_READY_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 30.0
_HEAP = ("-Xms256m", "-Xmx512m")
_log = get_logger("deploy.broker")


@dataclass(frozen=True, kw_only=True)
class BrokerStatus:
    """What `LocalBroker.status()` found: whether it runs, and where."""

    running: bool
    pid: int | None
    bootstrap: str | None
    state_dir: Path

    def describe(self) -> str:
        """Return one line for the command line."""
        if self.running:
            return f"running pid={self.pid} bootstrap={self.bootstrap} state={self.state_dir}"
        return f"stopped state={self.state_dir}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """
    Return True when a listener could bind `port` on 127.0.0.1 now.

    SO_REUSEADDR, as the JVM's server sockets use it: connections of the
    previous broker still in TIME_WAIT do not make its own port "taken".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(remembered: dict[str, object]) -> tuple[int, int]:
    """
    The (client, controller) ports for a start: the remembered ones while both are free, else new ones.

    `remembered` is the previous ``broker.json``.  Either port being taken
    means both are chosen afresh (they are one configuration), and logged.
    """
    bootstrap, controller = remembered.get("bootstrap"), remembered.get("controller_port")
    if isinstance(bootstrap, str) and isinstance(controller, int):
        port = int(bootstrap.rsplit(":", 1)[1])
        if port != controller and port_is_free(port) and port_is_free(controller):
            return port, controller
        _log.warning("broker_ports_changed", previous_bootstrap=bootstrap, previous_controller_port=controller,
                     reason="a remembered port is taken")
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    return port, controller_port


def is_reachable(bootstrap: str, *, timeout_s: float = 3.0) -> bool:
    """Return True when a Kafka broker answers a metadata request at `bootstrap`."""
    # log_level 0 silences librdkafka's connection-refused chatter while probing.
    admin = AdminClient(client_config(bootstrap, log_level=0))
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False
    return True


def ensure_jars(cache_root: Path, *, version: str = KAFKA_VERSION) -> Path:
    """
    Return the directory holding every runtime jar of the broker, fetching it once.

    Maven resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies
    from its configured repository; a ``.complete`` marker makes a half-finished
    download retry instead of starting a broker with missing classes.

    Raises `BrokerError` when Java or Maven is missing or resolution fails.
    """
    target = cache_root / "kafka" / version
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka broker jars")
    target.mkdir(parents=True, exist_ok=True)
    pom = resources.files("safebus.deploy").joinpath("kafka/pom.xml")
    with resources.as_file(pom) as pom_path:
        result = subprocess.run(
            [
                mvn, "-B", "-q", "-f", str(pom_path),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={target}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise BrokerError(f"Maven could not resolve Kafka {version}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if not any(target.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"Maven finished but no kafka_2.13 jar is in {target}")
    (target / ".complete").write_text(version + "\n")
    return target


class LocalBroker:
    """
    Start, inspect and stop the project's own single-node KRaft broker.

    Construct with the state directory that should own it; two state
    directories give two independent brokers (the test-suite uses its own).
    """

    def __init__(self, *, state_dir: Path, cache_dir: Path, version: str = KAFKA_VERSION) -> None:
        self.root = state_dir / "broker"
        self.cache_dir = cache_dir
        self.version = version

    @property
    def _info_path(self) -> Path:
        return self.root / "broker.json"

    def _read_info(self) -> dict[str, object]:
        try:
            info: dict[str, object] = json.loads(self._info_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return info

    def status(self) -> BrokerStatus:
        """Report whether this state directory's broker process is alive and answering."""
        info = self._read_info()
        pid = info.get("pid")
        bootstrap = info.get("bootstrap")
        alive = isinstance(pid, int) and _pid_alive(pid)
        running = alive and isinstance(bootstrap, str) and is_reachable(bootstrap)
        return BrokerStatus(
            running=bool(running),
            pid=pid if alive and isinstance(pid, int) else None,
            bootstrap=bootstrap if running and isinstance(bootstrap, str) else None,
            state_dir=self.root,
        )

    def up(self) -> BrokerStatus:
        """
        Make sure the broker runs and answers, and return where.

        Steps: (1) reuse a running broker; (2) fetch jars if not cached;
        (3) take the remembered ports (or free ones) and write the configuration; (4) format storage once;
        (5) start the JVM detached from this process; (6) wait until the admin
        API answers, failing with the broker's log tail if the JVM exits.
        """
        # (1): idempotent reuse.
        current = self.status()
        if current.running:
            return current
        if current.pid is not None:  # alive but not answering: a stuck broker.
            self.down()

        # (2): jars, cached after the first run.
        jars = ensure_jars(self.cache_dir, version=self.version)
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java ('java', 17 or newer) is not on PATH; the Kafka broker needs it")

        # (3): configuration on the ports of the last start, so clients keep their address.
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root / "data"
        port, controller_port = choose_ports(self._read_info())
        bootstrap = f"127.0.0.1:{port}"
        properties = self.root / "server.properties"
        properties.write_text(_server_properties(port=port, controller_port=controller_port, data=data))
        log4j = self.root / "log4j2.properties"
        log4j.write_text(_LOG4J2.replace("@LOGFILE@", str(self.root / "broker.log")))
        classpath = f"{jars}/*"
        jvm = [java, *_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.root}",
               f"-DZstdTempFolder={self.root}", f"-Dorg.xerial.snappy.tempdir={self.root}",
               "-cp", classpath]

        # (4): format storage once per state directory (a static quorum, no --standalone).
        if not (data / "meta.properties").exists():
            cluster_id = self._cluster_id(jvm)
            result = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(properties), "--ignore-formatted"],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise BrokerError(f"formatting broker storage failed:\n{result.stdout}{result.stderr}")

        # (5): start detached, so the broker outlives the command that started it.
        console = (self.root / "console.log").open("ab")
        process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(properties)],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        console.close()
        self._info_path.write_text(json.dumps({
            "pid": process.pid, "bootstrap": bootstrap, "controller_port": controller_port,
            "version": self.version, "started_at": time.time(),
        }))

        # (6): readiness, by asking the broker rather than sleeping.
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with {process.returncode}:\n{self.log_tail()}")
            if is_reachable(bootstrap, timeout_s=2.0):
                return BrokerStatus(running=True, pid=process.pid, bootstrap=bootstrap, state_dir=self.root)
            time.sleep(0.5)
        self.down()
        raise BrokerError(f"the Kafka broker did not answer within {_READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def down(self) -> BrokerStatus:
        """Stop the broker: SIGTERM, then SIGKILL after a timeout.  Safe when already stopped."""
        info = self._read_info()
        pid = info.get("pid")
        if isinstance(pid, int) and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        if self._info_path.exists():
            info["pid"] = None
            self._info_path.write_text(json.dumps(info))
        return BrokerStatus(running=False, pid=None, bootstrap=None, state_dir=self.root)

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` of the broker's logs, for error messages."""
        chunks = []
        for name in ("console.log", "broker.log"):
            path = self.root / name
            if path.exists():
                chunks.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(chunks)

    def _cluster_id(self, jvm: list[str]) -> str:
        result = subprocess.run([*jvm, "kafka.tools.StorageTool", "random-uuid"],
                                capture_output=True, text=True, check=False)
        cluster_id = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.returncode != 0 or not cluster_id:
            raise BrokerError(f"could not generate a cluster id:\n{result.stderr}")
        return cluster_id


def _pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (the broker, cluster and supervision share it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # the name may hold spaces
    except OSError:
        return True


def _server_properties(*, port: int, controller_port: int, data: Path) -> str:
    return f"""\
# Generated by safebus: single-node KRaft broker on loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
# Topics are code (safebus topics apply): never let a typo create one.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# safebus.limits: the largest record anyone may write; our producers stay below it.
message.max.bytes={BROKER_MESSAGE_MAX_BYTES}
log.retention.check.interval.ms=60000
"""


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = @LOGFILE@
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache
logger.apache.level = WARN
"""

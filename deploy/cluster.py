"""
A secured three-node KRaft cluster on loopback, from the same Maven-fetched jars as the single broker.

What a partnership's cluster is, made small enough for one machine: three
combined broker+controller nodes, every listener TLS, clients authenticated by
SASL/SCRAM-SHA-512 (or a certificate), the StandardAuthorizer on with nothing allowed that an ACL
does not allow, and topics replicated three times with ``min.insync.replicas``
2 (acks=all then survives one node down).  Each node has four listeners::

    CLIENT      SASL_SSL  the bus's clients (a SCRAM user each)
    MTLS        SSL       clients with a certificate instead (CN=router is User:router)
    INTERNAL    SSL       broker to broker, mutual TLS as User:CN=kafka-broker
    CONTROLLER  SSL       the KRaft quorum, mutual TLS as User:CN=kafka-broker

The super users are the nodes themselves and ``admin`` (created at format time,
KIP-900); every other principal gets a SCRAM credential through the Admin API
(`LocalCluster.add_user`) and only the ACLs it is given; each component of
`safebus.deploy.acls.COMPONENTS` gets one at ``up``, so ``safebus up`` can run
every worker as its own principal.  State::

    <state>/cluster/
        cluster.json     pids and ports (kept across down/up, as the single broker's)
        pki/             the throwaway CA and the nodes' certificates (`safebus.deploy.pki`)
        clients/         client certificates for the MTLS listener, <cn>.crt and <cn>.key
        users/           <name>.password per SCRAM user (0600): the administrator, agencies, tests' users
        components/      <component>.password per component: SAFEBUS_KAFKA_CREDENTIALS_DIR
        node-<n>/        server.properties, data/, node.log, console.log
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from safebus.deploy.acls import COMPONENTS
from safebus.deploy.broker import _LOG4J2, KAFKA_VERSION, _pid_alive, ensure_jars, free_port, port_is_free
from safebus.deploy.pki import BROKER_CN, LocalCA
from safebus.errors import BrokerError
from safebus.kafka_security import KafkaSecurity, SecurityProtocol
from safebus.limits import BROKER_MESSAGE_MAX_BYTES
from safebus.logs import get_logger
from safebus.private_files import write_private

__all__ = ["ADMIN_USER", "COMPONENT_PRINCIPALS", "ClusterStatus", "LocalCluster"]

ADMIN_USER = "admin"
"""The cluster's administrator principal (a super user): topics, ACLs and SCRAM users are managed as it."""

COMPONENT_PRINCIPALS = frozenset(c.principal for c in COMPONENTS)
"""The partnership's components, each a SCRAM user of its own made at ``up`` (the ACLs grant their needs)."""

_PORT_KINDS = ("client", "mtls", "internal", "controller")
_READY_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_HEAP = ("-Xms256m", "-Xmx512m")
_SCRAM_ITERATIONS = 8192
_log = get_logger("deploy.cluster")


@dataclass(frozen=True, kw_only=True)
class ClusterStatus:
    """Whether the cluster's nodes run and answer, and where its clients connect."""

    running: bool
    nodes_up: int
    bootstrap: str | None
    state_dir: Path

    def describe(self) -> str:
        """Return one line for the command line."""
        if self.running:
            return f"running nodes={self.nodes_up} bootstrap={self.bootstrap} secure=SASL_SSL state={self.state_dir}"
        return f"stopped nodes_up={self.nodes_up} state={self.state_dir}"


class LocalCluster:
    """Start, inspect and stop the secured local cluster of `nodes` nodes whose state is under `state_dir`."""

    def __init__(self, *, state_dir: Path, cache_dir: Path, nodes: int = 3, version: str = KAFKA_VERSION) -> None:
        if nodes < 1:
            raise BrokerError("a cluster needs at least one node")
        self.root = state_dir / "cluster"
        self.cache_dir = cache_dir
        self.nodes = nodes
        self.version = version

    # -- what clients need --------------------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """The CA certificate every client trusts."""
        return self.root / "pki" / "ca.pem"

    @property
    def credentials_dir(self) -> Path:
        """
        The components' password files (``SAFEBUS_KAFKA_CREDENTIALS_DIR``), apart from the administrator's.

        Apart so that what ``safebus up`` hands the workers holds no super user's password.
        """
        return self.root / "components"

    def password_file(self, user: str) -> Path:
        """Where `user`'s SCRAM password is kept (a component's in `credentials_dir`)."""
        if user in COMPONENT_PRINCIPALS:
            return self.credentials_dir / f"{user}.password"
        return self.root / "users" / f"{user}.password"

    def security(self, user: str = ADMIN_USER) -> KafkaSecurity:
        """The client settings of `user` on this cluster (SASL_SSL, SCRAM-SHA-512, the cluster's CA)."""
        return KafkaSecurity(security_protocol=SecurityProtocol.SASL_SSL, username=user,
                             password_file=self.password_file(user), ca_file=self.ca_file)

    @property
    def mtls_bootstrap(self) -> str:
        """Where clients that prove themselves with a certificate connect (the MTLS listener of every node)."""
        bootstrap = self._info().get("mtls_bootstrap")
        if not isinstance(bootstrap, str):
            raise BrokerError("the cluster has never been started")
        return bootstrap

    def certificate_security(self, user: str) -> KafkaSecurity:
        """
        Mutual-TLS client settings for `user` (a certificate with CN=`user`, issued once by the cluster's CA).

        For clients that cannot use SCRAM: librdkafka before 2.6.1 (Debian's kcat among them) builds a
        SCRAM proof Kafka 4 rejects.  Connect to `mtls_bootstrap`; the principal is ``User:<user>``.
        """
        files = LocalCA(self.root / "pki").issue(self.root / "clients", user)
        return KafkaSecurity(security_protocol=SecurityProtocol.SSL, ca_file=self.ca_file, cert_file=files.cert,
                             key_file=files.key)

    def environment(self, user: str) -> dict[str, str]:
        """The ``SAFEBUS_KAFKA_*`` variables that make a process `user` on this cluster."""
        return {"SAFEBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SAFEBUS_KAFKA_USERNAME": user,
                "SAFEBUS_KAFKA_PASSWORD_FILE": str(self.password_file(user)),
                "SAFEBUS_KAFKA_CA_FILE": str(self.ca_file)}

    def admin(self) -> AdminClient:
        """An admin client as the cluster's administrator."""
        bootstrap = self._info().get("bootstrap")
        if not isinstance(bootstrap, str):
            raise BrokerError("the cluster has never been started")
        return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **self.security().librdkafka()})

    def add_user(self, user: str) -> Path:
        """
        Give `user` a SCRAM-SHA-512 credential (a new random password, in its 0600 file) and return that file.

        Idempotent on the cluster's side: an upsertion replaces the previous credential.
        """
        password = secrets.token_hex(24)
        upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512,
                                                                        _SCRAM_ITERATIONS), password.encode())
        admin = self.admin()  # held until the answer: a collected client cancels its requests
        futures = admin.alter_user_scram_credentials([upsert], request_timeout=30)
        try:
            for future in futures.values():
                future.result()
        except KafkaException as exc:
            raise BrokerError(f"could not create the SCRAM user {user}: {exc}") from exc
        write_private(self.password_file(user), password.encode())
        _log.info("cluster_user_set", user=user)
        return self.password_file(user)

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _add_components(self) -> None:
        """Every component's SCRAM user, once (a credential survives restarts in the cluster's metadata)."""
        for principal in sorted(COMPONENT_PRINCIPALS):
            if not self.password_file(principal).exists():
                self.add_user(principal)

    def status(self) -> ClusterStatus:
        """Report how many nodes are alive, and whether the cluster answers an authenticated admin request."""
        info = self._info()
        alive = sum(1 for node in _nodes(info) if _alive(node))
        bootstrap = info.get("bootstrap")
        running = alive > 0 and isinstance(bootstrap, str) and self._brokers_answering(timeout_s=5) > 0
        return ClusterStatus(running=running, nodes_up=alive,
                             bootstrap=bootstrap if running and isinstance(bootstrap, str) else None,
                             state_dir=self.root)

    def up(self) -> ClusterStatus:
        """
        Make sure every node runs and the cluster answers, and return where.

        Steps: reuse a running cluster; fetch jars; make the CA and node certificates once; take the
        remembered ports (or free ones); format each node's storage once, with the same cluster id and
        the admin's SCRAM credential; start the JVMs; wait until every node is a broker of the cluster.
        """
        info = self._info()
        if all(_alive(n) for n in _nodes(info)) \
                and len(_nodes(info)) == self.nodes and self._brokers_answering(timeout_s=5) == self.nodes:
            return self.status()
        self.down()

        jars = ensure_jars(self.cache_dir, version=self.version)
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java ('java', 17 or newer) is not on PATH; the Kafka cluster needs it")
        ca = LocalCA(self.root / "pki")
        node_files = ca.issue(self.root / "pki", BROKER_CN)
        if not self.password_file(ADMIN_USER).exists():
            write_private(self.password_file(ADMIN_USER), secrets.token_hex(24).encode())
        admin_password = self.password_file(ADMIN_USER).read_text().strip()
        ports = self._ports(info)
        voters = ",".join(f"{n}@127.0.0.1:{p['controller']}" for n, p in ports.items())
        cluster_id = str(info.get("cluster_id") or "") or _cluster_id(java, jars)

        nodes: list[dict[str, object]] = []
        for node_id, port in ports.items():
            home = self.root / f"node-{node_id}"
            (home / "data").mkdir(parents=True, exist_ok=True)
            properties = home / "server.properties"
            properties.write_text(_server_properties(node_id=node_id, ports=port, voters=voters, data=home / "data",
                                                     keystore=node_files.bundle, truststore=ca.cert_path,
                                                     nodes=self.nodes))
            log4j = home / "log4j2.properties"
            log4j.write_text(_LOG4J2.replace("@LOGFILE@", str(home / "node.log")))
            jvm = _jvm(java, jars, home, log4j)
            if not (home / "data" / "meta.properties").exists():
                result = subprocess.run(
                    [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties),
                     "--add-scram", f"SCRAM-SHA-512=[name={ADMIN_USER},password={admin_password}]",
                     "--ignore-formatted"],
                    capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise BrokerError(f"formatting node {node_id} failed:\n{result.stdout}{result.stderr}")
            console = (home / "console.log").open("ab")
            process = subprocess.Popen([*jvm, "kafka.Kafka", str(properties)], stdout=console,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            console.close()
            nodes.append({"id": node_id, "pid": process.pid, **port})
        bootstrap = ",".join(f"127.0.0.1:{p['client']}" for p in ports.values())
        mtls_bootstrap = ",".join(f"127.0.0.1:{p['mtls']}" for p in ports.values())
        self._write_info({"cluster_id": cluster_id, "bootstrap": bootstrap, "mtls_bootstrap": mtls_bootstrap,
                          "nodes": nodes,
                          "version": self.version, "started_at": time.time()})

        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            exited = [n["id"] for n in nodes if not _pid_alive(int(str(n["pid"])))]
            if exited:
                self.down()
                raise BrokerError(f"node(s) {exited} exited while starting:\n{self.log_tail()}")
            if self._brokers_answering(timeout_s=3) == self.nodes:
                self._add_components()
                return self.status()
            time.sleep(1.0)
        self.down()
        raise BrokerError(f"the cluster did not answer within {_READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def down(self) -> ClusterStatus:
        """Stop every node (SIGTERM, then SIGKILL after a timeout).  Safe when already stopped."""
        info = self._info()
        for node in _nodes(info):
            self.stop_node(_id(node))
        return ClusterStatus(running=False, nodes_up=0, bootstrap=None, state_dir=self.root)

    def stop_node(self, node_id: int, *, sig: int = signal.SIGTERM) -> None:
        """Stop one node (a test of losing a broker mid-flow); `up` brings it back."""
        info = self._info()
        for node in _nodes(info):
            pid = node.get("pid")
            if _id(node) != node_id or not isinstance(pid, int):
                continue
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + _STOP_TIMEOUT_S
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _pid_alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            node["pid"] = None
        if info:
            self._write_info(info)

    def log_tail(self, lines: int = 15) -> str:
        """The last `lines` of each node's logs, for error messages."""
        chunks = []
        for home in sorted(self.root.glob("node-*")):
            for name in ("console.log", "node.log"):
                path = home / name
                if path.exists():
                    tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                    chunks.append(f"--- {home.name}/{name}\n{tail}")
        return "\n".join(chunks)

    # -- internals ----------------------------------------------------------------------------------------------

    def _info(self) -> dict[str, object]:
        try:
            info: dict[str, object] = json.loads((self.root / "cluster.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return info

    def _write_info(self, info: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "cluster.json").write_text(json.dumps(info, indent=1))

    def _ports(self, info: dict[str, object]) -> dict[int, dict[str, int]]:
        """Each node's (client, internal, controller) ports: the remembered ones while all are free."""
        kinds = _PORT_KINDS
        remembered = {_id(n): {k: int(n.get(k) or 0) for k in kinds}
                      for n in _nodes(info) if all(isinstance(n.get(k), int) for k in kinds)}
        if len(remembered) == self.nodes and all(port_is_free(p) for ports in remembered.values()
                                                 for p in ports.values()):
            return remembered
        if remembered:
            _log.warning("cluster_ports_changed", reason="a remembered port is taken or the node count changed")
        chosen: set[int] = set()
        fresh: dict[int, dict[str, int]] = {}
        for node_id in range(1, self.nodes + 1):
            ports: dict[str, int] = {}
            for kind in _PORT_KINDS:
                port = free_port()
                while port in chosen:
                    port = free_port()
                chosen.add(port)
                ports[kind] = port
            fresh[node_id] = ports
        return fresh

    def _brokers_answering(self, *, timeout_s: float) -> int:
        """How many brokers the cluster's metadata lists, asked as the administrator (0: no answer)."""
        if not self.password_file(ADMIN_USER).exists() or not self.ca_file.exists():
            return 0
        try:
            metadata = self.admin().list_topics(timeout=timeout_s)
        except (KafkaException, BrokerError):
            return 0
        return len(metadata.brokers)


def _nodes(info: dict[str, object]) -> list[dict[str, int | None]]:
    nodes = info.get("nodes")
    return nodes if isinstance(nodes, list) else []


def _alive(node: dict[str, int | None]) -> bool:
    pid = node.get("pid")
    return isinstance(pid, int) and _pid_alive(pid)


def _id(node: dict[str, int | None]) -> int:
    return int(node.get("id") or 0)


def _jvm(java: str, jars: Path, home: Path, log4j: Path) -> list[str]:
    return [java, *_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={home}", f"-DZstdTempFolder={home}", f"-Dorg.xerial.snappy.tempdir={home}",
            "-cp", f"{jars}/*"]


def _cluster_id(java: str, jars: Path) -> str:
    result = subprocess.run([java, "-cp", f"{jars}/*", "kafka.tools.StorageTool", "random-uuid"],
                            capture_output=True, text=True, check=False)
    cluster_id = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not cluster_id:
        raise BrokerError(f"could not generate a cluster id:\n{result.stderr}")
    return cluster_id


def _server_properties(*, node_id: int, ports: dict[str, int], voters: str, data: Path, keystore: Path,
                       truststore: Path, nodes: int) -> str:
    replicas = min(3, nodes)
    min_isr = 2 if nodes >= 3 else 1
    return f"""\
# Generated by safebus: node {node_id} of a secured {nodes}-node KRaft cluster on loopback only.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=CLIENT://127.0.0.1:{ports['client']},MTLS://127.0.0.1:{ports['mtls']},INTERNAL://127.0.0.1:{ports['internal']},CONTROLLER://127.0.0.1:{ports['controller']}
advertised.listeners=CLIENT://127.0.0.1:{ports['client']},MTLS://127.0.0.1:{ports['mtls']},INTERNAL://127.0.0.1:{ports['internal']}
listener.security.protocol.map=CLIENT:SASL_SSL,MTLS:SSL,INTERNAL:SSL,CONTROLLER:SSL
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
log.dirs={data}
# TLS everywhere, from PEM files (safebus.deploy.pki); nodes prove themselves to each other with their certificate.
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={truststore}
ssl.endpoint.identification.algorithm=https
listener.name.internal.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
listener.name.client.ssl.client.auth=none
# Clients with a certificate instead of a password: its CN is the principal, as a SCRAM user's name is
# (CN=router is User:router, with User:router's ACLs).
listener.name.mtls.ssl.client.auth=required
listener.name.mtls.ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
# Clients: SASL/SCRAM-SHA-512 (credentials live in the cluster metadata).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# Nothing is allowed that an ACL does not allow (safebus acls apply).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN_USER};User:CN={BROKER_CN}
allow.everyone.if.no.acl.found=false
# Topics are code (safebus topics apply): never let a typo create one.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
message.max.bytes={BROKER_MESSAGE_MAX_BYTES}
log.retention.check.interval.ms=60000
"""

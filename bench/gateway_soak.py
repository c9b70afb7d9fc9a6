"""
Gateway soak: 100,000 requests through a real gateway, and whether its memory stays flat.

The gateway runs in a child process (so the clients' memory is not counted)
with real credentials, real validation and real sealing; only the broker is
left out: its publishers seal each event exactly as `AgencyPublisher` does
and then drop the record instead of sending it (the bus is not what this
measures, and `bench/thin_path.py` covers it).  A few client threads send,
over keep-alive connections, a fixed mix:

- valid police incidents (202), each with a fresh event id;
- payloads that break the contract (422, every error listed);
- a school's credential flooding acknowledgements above its rate (202, then 429);
- malformed credentials (401) and health checks (200).

RSS (``VmRSS`` of the gateway process) is read after a warm-up (``before``),
at every tenth of the run, and at the end (``after``).  The bound it is
compared with is measured in the same run: what the gateway would hold had it
kept just the bodies of the requests it answered, i.e. the mean request body
size times the requests after the warm-up.  ``growth / bound`` near 0 is a
flat memory; a leak of one body per request would be 1.

Usage::

    python bench/gateway_soak.py [--requests N] [--clients C] [--warmup W] [--glibc-defaults]

The gateway tunes glibc's allocator as ``safebus gateway run`` does
(`safebus.native_memory`: a fixed mmap threshold);
``--glibc-defaults`` leaves it untuned, the comparison that showed why.

The last line printed is a JSON object with every number; it is also written
to ``bench/results/gateway_soak.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "gateway_soak.json"
EXAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "examples"
FLAT_BELOW = 0.05
"""Growth under 5 % of the keep-every-body bound counts as flat."""


def say(line: str) -> None:
    """Print progress at once (the run takes minutes)."""
    print(line, flush=True)


def _status(pid: int, field: str) -> int:
    """One number from a live process's ``/proc/<pid>/status`` (``VmRSS`` in KiB, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def rss_kib(pid: int) -> int:
    """Resident set size of a live process, in KiB."""
    return _status(pid, "VmRSS")


def threads(pid: int) -> int:
    """Threads of a live process: the gateway's worker pool must not grow with the requests it serves."""
    return _status(pid, "Threads")


# --------------------------------------------------------------------------- the server (child process)


def serve(state_dir: Path, port_file: Path) -> None:
    """Run a gateway over `state_dir` with publishers that seal and drop; write its port to `port_file`."""
    import signal

    from safebus import logs
    from safebus.app.wiring import Settings, key_service_for, tokeniser_for
    from safebus.directory import Agency, AgencyKind, Directory
    from safebus.native_memory import tune_malloc
    from safebus.producers.gateway import EventPublisher, Gateway, GatewayLimits, default_credentials_path
    from safebus.producers.police import PolicePublisher
    from safebus.publisher import AgencyPublisher
    from safebus.records import EVENT_ID, Output
    from safebus.topics import TopicNames

    class Sealing(AgencyPublisher):
        """Seals every event as the real publisher does, then drops the record (no broker in this bench)."""

        def publish_outputs(self, outputs: list[Output]) -> list[str]:
            self._producer.client.poll(0)  # the real publish's flush serves librdkafka's queue: so does this
            return [dict(o.headers)[EVENT_ID].decode() for o in outputs]

    class SealingPolice(PolicePublisher, Sealing):
        """The force's publisher (keyed by police reference), dropping its records."""

    logs.configure(level=os.environ.get("SAFEBUS_LOG_LEVEL", "WARNING"))  # as `safebus gateway run` does
    if os.environ.get("SOAK_GLIBC_DEFAULTS") != "1":  # the comparison run keeps glibc's defaults
        tune_malloc()  # as `safebus gateway run` does
    settings = Settings(state_dir=state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    tokeniser = tokeniser_for(state_dir)
    keys = key_service_for(state_dir)

    def factory(agency: Agency, directory: Directory) -> EventPublisher:
        kind = SealingPolice if agency.kind is AgencyKind.POLICE else Sealing
        return kind(bootstrap=settings.bootstrap, agency=settings.store.private_keys(agency.id), kind=agency.kind,
                    router=directory.router().public_keys(), names=settings.names, tokeniser=tokeniser, keys=keys)

    # The school's flood goes over this rate, the police mostly not; SAFEBUS_GATEWAY_* set the other limits.
    limits = GatewayLimits(**{**vars(GatewayLimits.from_env()), "rate_per_s": 400.0, "burst": 400})
    gateway = Gateway(settings, default_credentials_path(state_dir), publisher_factory=factory, limits=limits)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    port_file.write_text(str(gateway.address[1]))
    gateway.run(stop)


# --------------------------------------------------------------------------- the clients


def _incident() -> bytes:
    payload = json.loads((EXAMPLES / "police.domestic-abuse-incident.json").read_text())
    payload["event_id"] = str(uuid.uuid4())
    return json.dumps(payload).encode()


def _invalid() -> bytes:
    payload = json.loads((EXAMPLES / "police.domestic-abuse-incident.json").read_text())
    payload["event_id"] = str(uuid.uuid4())
    payload["incident_at"] = "yesterday"
    payload.pop("police_reference", None)
    return json.dumps(payload).encode()


def _acknowledgement() -> bytes:
    payload = json.loads((EXAMPLES / "encompass.acknowledged.json").read_text())
    payload["event_id"] = str(uuid.uuid4())
    return json.dumps(payload).encode()


class Client(threading.Thread):
    """One keep-alive connection sending its share of the mix; reconnects when the gateway closes it."""

    def __init__(self, port: int, tokens: dict[str, str], count: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.tokens, self.count = port, tokens, count
        self.random = random.Random(seed)
        self.statuses: Counter[int] = Counter()
        self.body_bytes = 0
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def one(self) -> None:
        roll = self.random.random()
        headers = {"Content-Type": "application/json"}
        method, body = "POST", b""
        if roll < 0.45:
            headers["Authorization"] = f"Bearer {self.tokens['police']}"
            body = _incident()
        elif roll < 0.65:
            headers["Authorization"] = f"Bearer {self.tokens['police']}"
            body = _invalid()
        elif roll < 0.85:
            headers["Authorization"] = f"Bearer {self.tokens['school']}"
            body = _acknowledgement()
        elif roll < 0.92:
            headers["Authorization"] = "Bearer not-a-credential"
            body = _incident()
        else:
            method = "GET"
        self.body_bytes += len(body)
        for attempt in range(3):
            try:
                self.connection.request(method, "/v1/health" if method == "GET" else "/v1/events",
                                        body=body if method == "POST" else None, headers=headers)
                response = self.connection.getresponse()
                response.read()
                self.statuses[response.status] += 1
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                return
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                self.connection.close()
                if attempt == 2:
                    raise

    def run(self) -> None:
        for _ in range(self.count):
            self.one()
        self.connection.close()


def drive(port: int, tokens: dict[str, str], total: int, clients: int, seed: int) -> tuple[Counter[int], int, float]:
    """Send `total` requests from `clients` threads; return the statuses, body bytes sent and seconds taken."""
    shares = [total // clients + (1 if n < total % clients else 0) for n in range(clients)]
    threads = [Client(port, tokens, share, seed * 1000 + n) for n, share in enumerate(shares)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    statuses: Counter[int] = Counter()
    for thread in threads:
        statuses.update(thread.statuses)
    return statuses, sum(t.body_bytes for t in threads), took


# --------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (``--serve`` is the child's own mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20_000,
                        help="requests before RSS is first read: the validators' bounded caches fill in about 20,000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="leave glibc's allocator untuned (the comparison for the gateway's malloc tuning)")
    parser.add_argument("--serve", nargs=2, metavar=("STATE_DIR", "PORT_FILE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its numbers; exit 1 if memory did not stay flat or a request failed oddly."""
    args = parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return 0
    from safebus.directory import PartnershipStore
    from safebus.native_memory import SERVER_MMAP_THRESHOLD
    from safebus.producers.gateway import add_credential, default_credentials_path
    from safebus.producers.synthetic import create_partnership

    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as temp:
        store = PartnershipStore(Path(temp) / "state")
        create_partnership(store)
        credentials = default_credentials_path(store.state_dir)
        tokens = {"police": add_credential(credentials, "northdale-police"),
                  "school": add_credential(credentials, "school-900101")}
        port_file = Path(temp) / "port"
        env = {**os.environ, "SAFEBUS_LOG_LEVEL": "ERROR", "SOAK_GLIBC_DEFAULTS": "1" if args.glibc_defaults else "0"}
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(store.state_dir), str(port_file)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.1)
            port = int(port_file.read_text())
            result = _soak(child.pid, port, tokens, args)
            result["malloc"] = ("glibc defaults (dynamic mmap threshold)" if args.glibc_defaults
                                else f"mmap threshold fixed at {SERVER_MMAP_THRESHOLD} B")
        finally:
            child.terminate()
            child.wait(timeout=30)
    path = RESULTS_PATH.with_name("gateway_soak-glibc-defaults.json") if args.glibc_defaults else RESULTS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if result["flat"] and not result["unexpected_statuses"] else 1


def _soak(pid: int, port: int, tokens: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    say(f"warm-up: {args.warmup} requests")
    drive(port, tokens, args.warmup, args.clients, args.seed)
    before, threads_before = rss_kib(pid), threads(pid)
    say(f"RSS after warm-up: {before / 1024:.1f} MiB, {threads_before} threads; "
        f"soak: {args.requests} requests from {args.clients} clients")
    statuses: Counter[int] = Counter()
    body_bytes, took = 0, 0.0
    trace = [before]
    tenth = max(1, args.requests // 10)
    sent = 0
    while sent < args.requests:
        step = min(tenth, args.requests - sent)
        got, size, seconds = drive(port, tokens, step, args.clients, args.seed + 1 + sent)
        statuses.update(got)
        body_bytes += size
        took += seconds
        sent += step
        trace.append(rss_kib(pid))
        say(f"  {sent:>7} requests, {sent / took:7.0f} req/s, RSS {trace[-1] / 1024:.1f} MiB, {threads(pid)} threads")
    after, threads_after = rss_kib(pid), threads(pid)
    bound_kib = body_bytes / 1024
    growth_kib = after - before
    result = {
        "requests": sent,
        "clients": args.clients,
        "requests_per_s": round(sent / took, 1),
        "statuses": dict(sorted(statuses.items())),
        "unexpected_statuses": {s: n for s, n in statuses.items() if s not in (200, 202, 401, 422, 429)},
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "rss_after_over_before": round(after / before, 3),
        "rss_trace_mib": [round(v / 1024, 1) for v in trace],
        "threads_before": threads_before,
        "threads_after": threads_after,
        "growth_mib": round(growth_kib / 1024, 2),
        "keep_every_body_bound_mib": round(bound_kib / 1024, 1),
        "growth_over_bound": round(growth_kib / bound_kib, 4) if bound_kib else None,
        "flat": growth_kib < FLAT_BELOW * bound_kib,
    }
    say(f"RSS {result['rss_before_mib']} -> {result['rss_after_mib']} MiB over {sent} requests "
        f"({result['requests_per_s']} req/s); growth {result['growth_mib']} MiB = {result['growth_over_bound']} of "
        f"the keep-every-body bound ({result['keep_every_body_bound_mib']} MiB): "
        f"{'flat' if result['flat'] else 'NOT FLAT'}; statuses {result['statuses']}")
    return result


if __name__ == "__main__":
    sys.exit(main())

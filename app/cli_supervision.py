"""
``safebus up``, ``safebus down`` and ``safebus status``: the partnership's workers under supervisord.

``up`` starts one supervisord for the state directory, which starts every
long-running worker of `safebus.deploy.supervision.WORKERS` and restarts any
that exits (docs/adr/0012); run again, it reports what already runs.
``down`` stops every worker gracefully and then supervisord.  The broker is
not one of the workers: ``safebus broker up`` (or ``KAFKA_BOOTSTRAP_SERVERS``)
comes first.  Each worker serves ``/healthz``, ``/readyz`` and ``/metrics`` on
its own loopback port, from ``SAFEBUS_HEALTH_PORT_BASE`` (default 9180) up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from safebus.deploy.supervision import (
    WORKERS,
    SupervisionStatus,
    Supervisor,
    Worker,
    health_port_base,
    health_ports,
)
from safebus.errors import ConfigError
from safebus.kafka_security import component_environment
from safebus.producers.gateway import default_credentials_path

if TYPE_CHECKING:
    from pathlib import Path

    from safebus.app.wiring import Settings

__all__ = ["add_parsers", "down", "status", "up", "workers_for"]

def add_parsers(commands: Any) -> None:
    """Add ``up``, ``down`` and ``status`` to the command line."""
    up_parser = commands.add_parser(
        "up", help="start every long-running worker under supervisord, restarted whenever one exits",
        description="Start the router, the inbox, queue, audit-sequencer and deadline-monitor workers (and the "
                    "gateway once it has a credential) under supervisord. Idempotent: a running set is reported. "
                    "Logs: <state>/logs/<worker>.log; supervisord's own: <state>/supervisor/supervisord.log.")
    up_parser.add_argument("--bootstrap")
    up_parser.add_argument("--status", action="store_true", help="only report each worker's state (as 'status')")
    commands.add_parser("down", help="stop every supervised worker (SIGTERM, then SIGKILL) and supervisord")
    commands.add_parser("status", help="each supervised worker's state")


def workers_for(settings: Settings) -> tuple[Worker, ...]:
    """The workers this partnership runs: all of them, the gateway only once it has a credential to check."""
    has_credentials = default_credentials_path(settings.state_dir).exists()
    return tuple(w for w in WORKERS if w.name != "gateway" or has_credentials)


def up(settings: Settings, *, log_level: str) -> int:
    """Start the workers of `settings` under supervisord (or report them running); 0 when every one runs."""
    if not settings.store.exists():
        raise ConfigError(f"no partnership in {settings.state_dir}: run 'safebus partnership init' first")
    workers = workers_for(settings)
    if len(workers) < len(WORKERS):
        print("gateway: not started (no credential yet: 'safebus gateway credential add --agency ID', then "
              "'safebus down' and 'safebus up')")
    identities = {w.name: component_environment(w.principal) for w in workers}  # each its own principal, if given
    base = health_port_base()  # a bad value is refused before anything starts
    result = Supervisor(state_dir=settings.state_dir).up(
        bootstrap=settings.bootstrap, prefix=settings.names.prefix, log_level=log_level, workers=workers,
        identities=identities, health_port_base=base)
    ports = health_ports(base, workers)
    if ports and not result.already_running:
        print("health: " + ", ".join(f"{name} 127.0.0.1:{port}" for name, port in ports.items())
              + " (/healthz, /readyz, /metrics)")
    return _report(result, settings.state_dir)


def status(state: Path) -> int:
    """Print each supervised worker's state; 0 when every one runs, 3 when supervisord or a worker does not."""
    return _report(Supervisor(state_dir=state).status(), state, missing_status=3)


def down(state: Path) -> int:
    """Stop every supervised worker and supervisord; 0 (also when nothing ran)."""
    supervisor = Supervisor(state_dir=state)
    before = supervisor.status()
    if not before.running:
        print("supervisord: not running")
        return 0
    after = supervisor.down()
    for worker in after.workers:
        print(f"  {worker.name:10} {worker.state}")
    print("supervisord: stopped")
    return 0


def _report(result: SupervisionStatus, state: Path, *, missing_status: int = 1) -> int:
    print("\n".join(result.describe()))
    if result.all_running:
        return 0
    for worker in result.workers:
        if worker.state != "RUNNING":
            print(f"{worker.name} is {worker.state}: see {state / 'logs' / (worker.name + '.log')}", file=sys.stderr)
    return missing_status


"""The ``--health-port`` option of the long-running worker commands, and the endpoint it starts."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from safebus.errors import ConfigError
from safebus.health import WorkerHealth, serve_health

__all__ = ["add_health_argument", "worker_health"]


def add_health_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--health-port`` to a worker command."""
    parser.add_argument("--health-port", type=int, metavar="PORT",
                        help="run: serve /healthz, /readyz and Prometheus /metrics on 127.0.0.1:PORT")


@contextmanager
def worker_health(worker: str, port: int | None) -> Iterator[WorkerHealth | None]:
    """The worker's health, served on loopback at `port` while the block runs (None and nothing served without)."""
    if port is None:
        yield None
        return
    health = WorkerHealth(worker)
    try:
        server = serve_health(health, port=port)
    except OSError as exc:  # a port in use or not ours: the operator's setting, not a crash
        raise ConfigError(f"--health-port {port}: cannot serve {worker}'s health on 127.0.0.1:{port}: "
                          f"{exc.strerror or exc} (give each worker a free port of its own)") from exc
    try:
        yield health
    finally:
        server.close()

"""
``safebus broker up|status|down [--secure]``: the local plaintext broker, or the secured local cluster.

The single plaintext node is what ``make demo`` runs; ``--secure`` is a
partnership's cluster made small (docs/adr/0013), and its status prints the
``export`` lines an operator needs to act on it: the administrator's identity,
the components' credentials directory, and where certificate clients connect.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safebus.deploy.broker import LocalBroker
from safebus.deploy.cluster import ADMIN_USER, LocalCluster
from safebus.kafka_security import CREDENTIALS_DIR
from safebus.paths import cache_dir

__all__ = ["add_parser", "broker"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``broker``."""
    parser = commands.add_parser("broker", help="the local Kafka broker, or a secured local cluster")
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("--secure", action="store_true",
                        help="a cluster with TLS, SASL/SCRAM and ACLs enforced (default: one plaintext node)")
    parser.add_argument("--nodes", type=int, default=3, metavar="N", help="with --secure: how many nodes (3)")


def broker(action: str, state: Path, *, secure: bool, nodes: int) -> int:
    """Run `action` on the broker (or cluster) of `state`; 0 when it runs (or was stopped), 3 when it does not."""
    if not secure:
        single = LocalBroker(state_dir=state, cache_dir=cache_dir())
        status = {"up": single.up, "status": single.status, "down": single.down}[action]()
        print(status.describe())
        return 0 if status.running or action == "down" else 3
    cluster = LocalCluster(state_dir=state, cache_dir=cache_dir(), nodes=nodes)
    secured = {"up": cluster.up, "status": cluster.status, "down": cluster.down}[action]()
    print(secured.describe())
    if secured.running and secured.bootstrap:
        print("# to act as the cluster's administrator:")
        print(f"export KAFKA_BOOTSTRAP_SERVERS={secured.bootstrap}")
        for name, value in cluster.environment(ADMIN_USER).items():
            print(f"export {name}={value}")
        print("# and 'safebus up' runs each worker as its own principal, with only its ACLs:")
        print(f"export {CREDENTIALS_DIR}={cluster.credentials_dir}")
        print(f"# clients with a certificate instead of a password (mutual TLS; CN = principal): "
              f"{cluster.mtls_bootstrap}")
    return 0 if secured.running or action == "down" else 3

"""
``safebus config check``: what this process would use, secrets masked, or the setting that is wrong.

An operator runs it before ``safebus up`` on a new machine: every long-running
worker reads the same variables, so one check in the same environment shows
what all of them will use (the Kafka identity, the broker, the topic
namespace, the state directory, the e-mail relay, the health ports ``up`` hands
out), and a bad value is refused
here, with its variable's name, instead of by a worker after it started.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

from safebus.app.encompass_wiring import mail_relay
from safebus.deploy.supervision import WORKERS, health_port_base, health_ports
from safebus.deploy.topics_admin import Replication
from safebus.errors import ConfigError
from safebus.kafka_security import CREDENTIALS_DIR, component_environment, load_security
from safebus.settings import database_url
from safebus.settings_file import SETTINGS_FILE
from safebus.sql_dialects import location_text
from safebus.topics import TopicNames

__all__ = ["add_parser", "check"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``config check``."""
    config = commands.add_parser("config", help="check the settings every component will use")
    config.add_argument("action", choices=["check"])


def check(state: Path, names: TopicNames, out: TextIO, err: TextIO) -> int:
    """Print the settings in use, one ``name: value`` per line (exit 0), or the wrong one (exit 2)."""
    try:
        shared_database = database_url()
        security = load_security()
        for worker in WORKERS:
            component_environment(worker.principal)  # each component's password file is there
        relay = mail_relay()
        replication = Replication.configured()
        base = health_port_base()
    except (ConfigError, OSError) as exc:
        print(f"safebus: configuration refused: {exc}", file=err)
        return 2
    shown: dict[str, str] = {
        "settings_file": os.environ.get(SETTINGS_FILE) or "(none: the environment only)",
        "state_dir": str(state),
        "topic_prefix": names.prefix,
        "kafka.bootstrap": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "(this state directory's local broker)",
        "stores": (f"one database for every shared store and the accounts: {location_text(shared_database)}"
                   if shared_database else "(each store's own SQLite file in the state directory)"),
    }
    shown |= {f"kafka.{name}": value for name, value in security.describe().items()}
    shown["topics.replication"] = (f"{replication.factor} copies, {replication.min_insync} in sync" if replication
                                   else "as the cluster allows (3 copies, 2 in sync from three brokers)")
    if os.environ.get(CREDENTIALS_DIR):
        shown["kafka.components"] = (f"each worker as its own principal, passwords in {os.environ[CREDENTIALS_DIR]}: "
                                     + ", ".join(f"{w.name}={w.principal}" for w in WORKERS))
    if relay is None:
        shown["smtp"] = "(none: nobody is e-mailed; steps are still audited)"
    else:
        shown |= {"smtp.relay": f"{relay.host}:{relay.port}", "smtp.security": relay.security.value}
        if relay.username is not None:
            shown |= {"smtp.user": relay.username, "smtp.password": "****"}
        if relay.ca_file is not None:
            shown["smtp.ca"] = str(relay.ca_file)
    ports = health_ports(base)
    shown["health_ports"] = (", ".join(f"{name} {port}" for name, port in ports.items()) + " (safebus up, 127.0.0.1)"
                             if ports else "(none: SAFEBUS_HEALTH_PORT_BASE=off)")
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        print(f"{name:<{width}}  {value}", file=out)
    return 0

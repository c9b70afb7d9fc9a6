"""
``safebus db upgrade`` and ``safebus db status``: the consumer stores' schema versions, ahead of the workers.

Every store brings itself to its current version when it opens, so a single
host needs neither command.  They are for a database that several hosts
share: an operator upgrades it once, before rolling out a release (so no
worker stops on a migration, and a failing one is met at the console, not in
a worker's log), and ``status`` shows what each store has applied.  Both are
idempotent.  Without ``--url`` each store is where the workers would open it
(``SAFEBUS_DATABASE_URL``, or its own file in the state directory: the web
sessions and sign-in throttle have one per web app, and the Key Adult and
officer accounts are JSON files then, with no schema); with it, every store
named by ``--store`` (default: all) in that one database.  The e-mail
outboxes are not listed: each worker keeps its own file, which it upgrades
when it opens it, and none is shared.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from safebus.app.cli_encompass import inbox_web_state
from safebus.app.queue_wiring import queue_path
from safebus.app.wiring import Settings
from safebus.consumers.encompass.monitor import MONITOR_SCHEMA
from safebus.consumers.inbox.store import INBOX_SCHEMA
from safebus.consumers.queues.store import QUEUES_SCHEMA
from safebus.consumers.web.account_store import ACCOUNTS_SCHEMA
from safebus.consumers.web.pages import throttle_path
from safebus.consumers.web.sessions import SESSIONS_SCHEMA, sessions_path
from safebus.consumers.web.sign_in_throttle import THROTTLE_SCHEMA
from safebus.migrations import Schema, status, upgrade
from safebus.settings import database_url, store_location
from safebus.sql_dialects import location_text

__all__ = ["STORES", "add_parser", "run", "store_locations"]

STORES: Mapping[str, Schema] = {"inbox": INBOX_SCHEMA, "queues": QUEUES_SCHEMA, "monitor": MONITOR_SCHEMA,
                                 "sessions": SESSIONS_SCHEMA, "throttle": THROTTLE_SCHEMA, "accounts": ACCOUNTS_SCHEMA}
"""Every store with schema versions, by the name ``--store`` takes (its migrations' prefix)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``db upgrade`` and ``db status``."""
    db = commands.add_parser("db", help="the stores' schema versions: upgrade a (shared) database, or show its state")
    db.add_argument("db_action", choices=["upgrade", "status"])
    db.add_argument("--url", default=None,
                    help="the database: postgresql://…, sqlite:///path or a path (default: where each store is "
                         "configured: SAFEBUS_DATABASE_URL, else its file in the state directory)")
    db.add_argument("--store", action="append", choices=sorted(STORES), default=None,
                    help="only this store (repeatable; default: every store)")


def store_locations(settings: Settings) -> dict[str, list[Path | str]]:
    """Where the workers and web apps of `settings` open each store: the shared database, or their own files."""
    shared = database_url()
    if shared is not None:
        return {name: [shared] for name in STORES}
    web_apps = (inbox_web_state(settings), settings.audit_dir)
    return {"inbox": [settings.inbox_location], "queues": [store_location(queue_path(settings))],
            "monitor": [store_location(settings.monitor_path)],
            "sessions": [sessions_path(app) for app in web_apps], "throttle": [throttle_path(app) for app in web_apps],
            "accounts": []}  # without a shared database the accounts are JSON files, with no schema


def run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """Upgrade, or report on, the chosen stores; one line per store; exit 0, or 3 from ``status`` if any lags."""
    configured = store_locations(settings)
    behind = False
    for name in args.store or list(STORES):
        for location in [args.url] if args.url is not None else configured[name]:
            where = location_text(location)
            if args.db_action == "upgrade":
                applied = upgrade(location, STORES[name])
                done = f"applied {', '.join(applied)}" if applied else "already current"
                print(f"{name:<8} {where}  {done}", file=out)
            else:
                found = status(location, STORES[name])
                behind = behind or not found.current
                state = "current" if found.current else f"pending {', '.join(found.pending)}"
                print(f"{name:<8} {where}  {state} (applied: {', '.join(found.applied) or 'none'})", file=out)
    return 3 if behind else 0

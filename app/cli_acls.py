"""
``safebus acls apply``: the cluster's ACLs made equal to the policy the topic registry implies.

It prints the diff (``+`` granted, ``-`` revoked) before changing anything;
``--dry-run`` prints it and changes nothing (exit 1 when the cluster has
drifted, so a scheduled check can alert).  Run it as the cluster's
administrator after ``safebus topics apply`` and after every directory change.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from safebus.app.wiring import Settings
from safebus.deploy.acls import desired_bindings, managed_principals, plan
from safebus.deploy.acls_admin import apply_plan, current_bindings

__all__ = ["acls", "add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``acls apply``."""
    parser = commands.add_parser("acls", help="least-privilege ACLs generated from the topic registry")
    parser.add_argument("action", choices=["apply"])
    parser.add_argument("--dry-run", action="store_true", help="show the diff; change nothing (exit 1 if drifted)")
    parser.add_argument("--bootstrap")


def acls(settings: Settings, *, dry_run: bool, out: TextIO) -> int:
    """Show how the cluster differs from the policy and (unless `dry_run`) correct it."""
    directory = settings.store.load_directory()
    changes = plan(desired_bindings(directory, settings.names), current_bindings(settings.bootstrap),
                   managed=managed_principals(directory))
    for line in changes.lines():
        print(line, file=out)
    if changes.in_step:
        print("acls: in step with the topic registry", file=out)
        return 0
    if dry_run:
        print(f"acls: {len(changes.create)} to grant, {len(changes.delete)} to revoke (dry run: nothing changed)",
              file=out)
        return 1
    apply_plan(settings.bootstrap, changes)
    print(f"acls: {len(changes.create)} granted, {len(changes.delete)} revoked", file=out)
    return 0

"""
``safebus audit rebuild``: this machine's audit ledger, made again from the bus (a lost disk, a new host).

It reads the leaves topic and the checkpoint topic (`safebus.consumers.audit.rebuild`), writes the ledger
beside its place and moves it there only once every leaf and checkpoint has been proven, so a refused or
interrupted rebuild never leaves a short log for the sequencer to carry on from.  It never makes a log key:
it needs only the log's public identity (``--vkey``, or the ``log.vkey`` / ``log-key.pem`` restored from
backup), because a ledger under a new key would be a different log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from safebus.clock import utc_now
from safebus.consumers.audit.leaf_records import NotALeaf
from safebus.consumers.audit.ledger import AuditLedger, LedgerImportError, LogIdentity, LogKey
from safebus.consumers.audit.rebuild import rebuild
from safebus.errors import ConfigError
from safebus.kafka_io import iter_topic

if TYPE_CHECKING:
    from safebus.app.wiring import Settings

__all__ = ["EXIT_REFUSED", "empty_beside", "log_identity", "rebuild_ledger"]

EXIT_REFUSED = 1
"""The bus's copy of the log does not hold (as ``audit verify``'s exit 1)."""


def log_identity(settings: Settings, vkey: str | None) -> LogIdentity:
    """The log's public identity: `vkey`, else the published ``log.vkey``, else the key's (never a new key)."""
    if vkey:
        return LogIdentity.from_vkey(vkey)
    published = settings.audit_dir / "log.vkey"
    if published.exists():
        return LogIdentity.from_vkey(published.read_text().strip())
    key = settings.audit_dir / "log-key.pem"
    if key.exists():
        return LogKey.load_or_create(key, origin=settings.audit_origin).identity
    raise ConfigError(f"no log identity in {settings.audit_dir}: restore log-key.pem (and log.vkey) from their "
                      "backup first, or give --vkey with the verifier key the log published")


def empty_beside(target: Path, identity: LogIdentity, *, doing: str) -> Path:
    """
    A fresh file beside `target` to write a ledger into, refusing a `target` that holds leaves.

    A rebuild or restore never merges into a log: it is moved into place only when all of it holds.
    """
    if target.exists():
        existing = AuditLedger(target, None, identity=identity)
        try:
            if existing.size:
                raise ConfigError(f"a ledger of {existing.size} leaves is already at {target}: move it away first "
                                  f"(a {doing} never merges into a log), or give --into another file")
        finally:
            existing.close()
    partial = target.with_name(f"{target.name}.{doing}-in-progress")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    return partial


def rebuild_ledger(settings: Settings, *, vkey: str | None, into: Path | None, out: TextIO, err: TextIO) -> int:
    """Rebuild the ledger at `into` (default: this machine's ledger, which must not hold leaves); 0 when proven."""
    target = into or settings.audit_dir / "ledger.sqlite"
    identity = log_identity(settings, vkey)
    partial = empty_beside(target, identity, doing="rebuild")
    ledger = AuditLedger(partial, None, identity=identity)
    try:
        report = rebuild(ledger, iter_topic(settings.bootstrap, settings.names.audit_leaves),
                         iter_topic(settings.bootstrap, settings.names.checkpoints), now=utc_now)
    except (LedgerImportError, NotALeaf) as exc:
        print(f"safebus: audit rebuild refused after {ledger.size} leaves: {exc}", file=err)
        print(f"(the partial rebuild is kept at {partial} for investigation; {target} is untouched)", file=err)
        return EXIT_REFUSED
    finally:
        ledger.close()
    os.replace(partial, target)
    print(f"rebuilt {target}: {report.leaves} leaves ({report.repeated} repeated records taken once), "
          f"{report.checkpoints} checkpoints, root {report.root.hex()}", file=out)
    if report.unstamped:
        print(f"  {report.unstamped} checkpoints were published without their signing time: stored with now's",
              file=out)
    return 0

"""
Data keys per data subject and period, and their destruction (crypto-shredding).

Personal data on the bus is encrypted under keys that belong to the people it
is about: one 256-bit key per subject token per calendar month, named
``<token>@<YYYY-MM>``.  Every envelope's content key is derived from those keys
*and* the recipient's wrapped key, so reading it needs both.  Erasing a subject
destroys their keys: every copy of their data — in any topic, inbox, replica or
backup — becomes unreadable at once, without rewriting a log.

`KeyService` is the seam a real KMS implements.  `FileKeyService` is the
development keystore: one 0600 file per key, and an append-only erasure record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from safebus.errors import ConfigError

__all__ = ["FileKeyService", "KeyService", "SubjectKey", "period_of", "split_key_id"]

_KEY_ID = re.compile(r"^(subj_[0-9a-f]{32})@(\d{4}-\d{2})$")


@dataclass(frozen=True)
class SubjectKey:
    """One subject's data key for one period."""

    key_id: str
    secret: bytes


def period_of(moment: datetime) -> str:
    """The key period (calendar month, UTC) a moment falls in."""
    return f"{moment.year:04d}-{moment.month:02d}"


def split_key_id(key_id: str) -> tuple[str, str]:
    """Return (token, period) of a key id; raises ConfigError if it is not one."""
    match = _KEY_ID.match(key_id)
    if not match:
        raise ConfigError(f"not a subject key id: {key_id[:80]!r}")
    return match.group(1), match.group(2)


class KeyService(Protocol):
    """What the bus needs from a key management service."""

    def subject_key(self, token: str, period: str) -> SubjectKey:
        """Return the subject's key for `period`, creating it if needed."""
        ...

    def lookup(self, key_id: str) -> bytes | None:
        """Return the key's secret, or None if it does not exist (never created, or erased)."""
        ...

    def erase_subject(self, token: str) -> list[str]:
        """Destroy every key of `token`; return the destroyed key ids."""
        ...


class FileKeyService:
    """
    Development keystore: ``<root>/<token>/<period>.key``, each 0600.

    Destruction overwrites then unlinks the file; ``<root>/erasures.jsonl``
    records which key ids were destroyed and when (the audit trail records who
    and why).
    """

    def __init__(self, root: Path) -> None:
        """Keep keys under `root` (created 0700 on first use)."""
        self.root = root

    def _path(self, token: str, period: str) -> Path:
        return self.root / token / f"{period}.key"

    def subject_key(self, token: str, period: str) -> SubjectKey:
        """Return (creating if needed) the key of `token` for `period`."""
        key_id = f"{token}@{period}"
        split_key_id(key_id)
        path = self._path(token, period)
        if not path.exists():
            # Write the whole key to a private temporary file, then link it into
            # place: the link is atomic and fails if another process won the
            # race, so no reader ever sees a half-written key.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(os.urandom(32))
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        return SubjectKey(key_id=key_id, secret=path.read_bytes())

    def lookup(self, key_id: str) -> bytes | None:
        """Return a key's secret, or None if it was never created or has been erased."""
        try:
            token, period = split_key_id(key_id)
        except ConfigError:
            return None
        path = self._path(token, period)
        return path.read_bytes() if path.exists() else None

    def erase_subject(self, token: str) -> list[str]:
        """Overwrite and delete every key file of `token`; return the destroyed key ids."""
        folder = self.root / token
        destroyed = []
        for path in sorted(folder.glob("*.key")) if folder.is_dir() else []:
            with open(path, "r+b") as handle:
                handle.write(os.urandom(len(handle.read())))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            destroyed.append(f"{token}@{path.stem}")
        if destroyed:
            with open(self.root / "erasures.jsonl", "a") as record:
                record.write(json.dumps({"token": token, "key_ids": destroyed}) + "\n")
        return destroyed

"""
Where the bus is and whose state to use: the settings every component is built
from, and the standard pieces of a state directory.

These are kernel, not wiring: a stage that runs on its own (the ingress
gateway, say) needs the same directory source, tokeniser and key service as
the composition root builds (`safebus.app.wiring`), and must not import the
composition root to get them (tests/architecture: stages never import the
application).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safebus.directory import Directory, PartnershipStore
from safebus.keyservice import FileKeyService, KeyService
from safebus.pseudonyms import Tokeniser
from safebus.topics import TopicNames


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Where the bus is and whose state to use."""

    state_dir: Path
    bootstrap: str
    names: TopicNames

    @property
    def store(self) -> PartnershipStore:
        """The partnership's directory and local keys."""
        return PartnershipStore(self.state_dir)

    @property
    def audit_dir(self) -> Path:
        """The audit log's ledger, key and projection."""
        return self.state_dir / "audit" / self.names.prefix

    @property
    def audit_origin(self) -> str:
        """The audit log's checkpoint origin line (C2SP: a schema-less URL naming the log)."""
        return f"audit.safebus.invalid/{self.names.prefix}"

    @property
    def inbox_path(self) -> Path:
        """The school inbox database."""
        return self.state_dir / "inbox.sqlite"


def tokeniser_for(state_dir: Path) -> Tokeniser:
    """The partnership's pseudonymisation key (created on first use)."""
    return Tokeniser.load_or_create(state_dir / "keys" / "pseudonymisation.key")


def key_service_for(state_dir: Path) -> KeyService:
    """The subject data-key service (the development file keystore)."""
    return FileKeyService(state_dir / "keys" / "subjects")


def directory_source(store: PartnershipStore, *, clock: Callable[[], datetime] = utc_now) -> Callable[[], Directory]:
    """
    The current verified directory, re-read whenever its file changes.

    This is what makes rotation and revocation take effect without a restart:
    the administrator writes a newly signed entry and every running component
    sees it at its next record.
    """
    cached: list[tuple[tuple[int, int, int], Directory]] = []

    def current() -> Directory:
        # Every write replaces the file (a new inode), so a change is seen even
        # within one timestamp tick.
        info = store.directory_path.stat()
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if not cached or cached[0][0] != stamp:
            cached[:] = [(stamp, store.load_directory(now=clock()))]
        return cached[0][1]

    return current

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
from datetime import datetime
from pathlib import Path

from safebus.clock import utc_now
from safebus.directory import PartnershipStore
from safebus.keyservice import FileKeyService, KeyService
from safebus.live_directory import LiveDirectory
from safebus.pseudonyms import Tokeniser
from safebus.topics import TopicNames

__all__ = ["Settings", "directory_source", "key_service_for", "tokeniser_for"]


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


def directory_source(store: PartnershipStore, *, clock: Callable[[], datetime] = utc_now) -> LiveDirectory:
    """
    The current verified directory of a running component, kept current without a restart.

    A `LiveDirectory`: until the component's ``run`` starts it following the
    signed directory topic (`safebus.live_directory.follow`) it re-reads the
    directory file whenever that changes; afterwards it also takes every
    entry published on the topic.  Rotations, new agencies and retirements
    take effect at the component's next record.
    """
    return LiveDirectory(store=store, initial=store.load_directory(now=clock()), clock=clock)

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

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.clock import utc_now
from safebus.directory import PartnershipStore
from safebus.errors import ConfigError
from safebus.keyservice import FileKeyService, KeyService
from safebus.live_directory import LiveDirectory
from safebus.pseudonyms import Tokeniser
from safebus.sql_dialects import dialect_for
from safebus.topics import TopicNames

__all__ = [
    "DATABASE_URL", "Settings", "database_url", "directory_source", "key_service_for", "store_location",
    "tokeniser_for",
]

DATABASE_URL = "SAFEBUS_DATABASE_URL"
"""The variable naming one database for every consumer store (``postgresql://…``), in place of their files."""


def database_url() -> str | None:
    """
    The database ``SAFEBUS_DATABASE_URL`` names, or None when unset.

    Raises ConfigError, naming the variable, for a URL no store can open.
    """
    url = os.environ.get(DATABASE_URL, "").strip()
    if not url:
        return None
    try:
        dialect_for(url)
    except ConfigError as exc:
        raise ConfigError(f"{DATABASE_URL}: {exc}") from exc
    return url


def store_location(default: Path) -> Path | str:
    """
    Where a consumer store lives: the database ``SAFEBUS_DATABASE_URL`` names, or else its own file `default`.

    One URL for every store keeps the setting simple: their tables and
    migration ids are distinct, so the inbox, the queues, the deadline
    monitor and the web apps' sessions, throttle and accounts share one
    PostgreSQL database (one per partnership, that is per topic prefix) that
    every host of theirs reaches.
    """
    return database_url() or default


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
        """The school inbox's own file, where it lives unless ``SAFEBUS_DATABASE_URL`` says otherwise."""
        return self.state_dir / "inbox.sqlite"

    @property
    def inbox_location(self) -> Path | str:
        """Where the school inbox lives: `inbox_path`, or the shared database (`store_location`)."""
        return store_location(self.inbox_path)

    @property
    def monitor_path(self) -> Path:
        """The deadline monitor's own file (one per topic prefix)."""
        return self.state_dir / "encompass" / f"{self.names.prefix}-monitor.sqlite"


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

"""
Where safebus keeps state on this machine.

One state directory holds everything a running bus needs locally — the broker's
data, pid and bootstrap address, agency keys, inboxes — so that removing it
resets the machine.  Downloaded broker jars live in a separate cache directory,
because they are expensive to fetch and identical for every state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "state_dir"]


def state_dir() -> Path:
    """Return the state directory: ``$SAFEBUS_HOME``, else ``$XDG_STATE_HOME/safebus``."""
    explicit = os.environ.get("SAFEBUS_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().resolve() / "safebus"


def cache_dir() -> Path:
    """Return the cache directory for downloaded jars: ``$SAFEBUS_CACHE``, else XDG cache."""
    explicit = os.environ.get("SAFEBUS_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "safebus"

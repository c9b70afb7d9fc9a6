"""
The server secret every web app keeps on disk, and the keys derived from it.

It is its own module because the secret outlives any one app: the commands
that start the dashboards create or load it before an app exists, and every
key a page uses (sessions' CSRF tokens, device cookies, an app's own purposes)
is an HMAC of it under a distinct purpose, so none can stand in for another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from safebus.errors import ConfigError
from safebus.private_files import create_private

__all__ = ["MIN_SECRET_BYTES", "derived_key", "load_or_create_secret", "site_key"]

MIN_SECRET_BYTES = 32
"""The shortest server secret accepted: 256 bits."""


def load_or_create_secret(path: Path) -> bytes:
    """
    The server secret stored at `path`, created (32 random bytes, mode 0600) if missing.

    Keeping it in a file lets sessions survive a restart; deleting the file
    ends every session.  Raises ConfigError if the file is open to other users
    or too short.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists() and create_private(path, candidate := secrets.token_bytes(MIN_SECRET_BYTES)):
        return candidate  # written whole before its name appeared: a racing reader never sees half a secret
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"web secret {path} is open to other users (mode {mode & 0o777:o}); chmod 600")
    secret = path.read_bytes()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"web secret {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def derived_key(secret: bytes, purpose: str) -> bytes:
    """
    A key for an app's own `purpose` derived from the server secret.

    Each purpose gets its own key, and none equals the session or CSRF keys,
    so a value made for one use can never stand in for another.
    """
    return site_key(secret, f"app|{purpose}")


def site_key(secret: bytes, purpose: str) -> bytes:
    """The key the site machinery itself uses for `purpose` (``csrf``, ``device``); apps use `derived_key`."""
    return hmac.new(secret, f"safebus-web|{purpose}".encode(), hashlib.sha256).digest()

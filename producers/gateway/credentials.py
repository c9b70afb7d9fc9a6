"""
The gateway's bearer credentials: issue them, store them, check them.

Split from the HTTP and publishing code because this is the gateway's one
piece of secret handling: what an administrator's ``safebus gateway
credential`` commands write and what every request is checked against, to be
reviewed on its own.

- Each credential holds a random 256-bit secret. The file stores only its
  scrypt hash (`safebus.passwords`), with a per-credential salt, in mode 0600.
  Hashes are compared in constant time. An unknown credential id still costs
  one scrypt, so a 401 looks and takes the same whether the id or the secret
  was wrong.
- Once a secret is verified, its SHA-256 is kept in memory only, bound to the
  stored hash. An agency's steady traffic therefore costs one scrypt, not one
  per request.
- The file is re-read whenever it changes, so a revocation applies from the
  next request without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.account_files import exclusive_lock, refuse_open_to_others, write_private_json
from safebus.clock import utc_now
from safebus.directory import AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.logs import get_logger
from safebus.passwords import ScryptHash, Verifier, hash_secret
from safebus.schemas._base import AgencyId

__all__ = [
    "Credential", "CredentialFile", "CredentialStore", "add_credential", "default_credentials_path",
    "revoke_credential",
]

_log = get_logger("producers.gateway")

_CREDENTIAL_ID = re.compile(r"^cred-[0-9a-f]{16}$")


class Credential(ScryptHash):
    """One agency credential as stored: never the secret, only its salted scrypt hash (`safebus.passwords`)."""

    trailing_fields: ClassVar[tuple[str, ...]] = ("created_at", "revoked_at")

    agency_id: AgencyId
    created_at: datetime
    revoked_at: datetime | None = None


class CredentialFile(BaseModel):
    """The credentials file: credential id -> `Credential`. Revoked entries stay, for the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["safebus-gateway-credentials/1"] = "safebus-gateway-credentials/1"
    credentials: dict[str, Credential] = Field(default_factory=dict)


def default_credentials_path(state_dir: Path) -> Path:
    """Where the gateway's credentials live in a state directory."""
    return state_dir / "gateway" / "credentials.json"


def _read(path: Path) -> CredentialFile:
    """Read the credentials file. Raises ConfigError if it is missing, malformed or open to other users."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"no gateway credentials at {path}; add one with 'safebus gateway credential add'") from exc
    refuse_open_to_others(path, mode, "gateway credentials")
    try:
        return CredentialFile.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid gateway credentials {path}: {exc.error_count()} errors") from exc


@contextmanager
def _locked(path: Path) -> Iterator[CredentialFile]:
    """Hold the file's lock for a read-modify-write and yield its content (empty if there is no file yet)."""
    with exclusive_lock(path):
        yield _read(path) if path.exists() else CredentialFile()


def add_credential(path: Path, agency_id: str, *, directory: Directory | None = None,
                   now: datetime | None = None) -> str:
    """
    Create a credential for `agency_id` and return its bearer token, ``<credential id>.<secret>``.

    The token is shown only this once: the file keeps just the salted hash.
    Given the partnership `directory` (the CLI always passes it), it refuses an
    agency that is not in it, and it refuses the router. The router's key signs
    decisions and alerts, which nobody may submit through a gateway.
    """
    if directory is not None:
        agency = directory.get(agency_id)
        if agency is None:
            raise ConfigError(f"no agency {agency_id!r} in the partnership directory")
        if agency.kind is AgencyKind.ROUTER:
            raise ConfigError("the router cannot have a gateway credential")
    credential_id = f"cred-{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    try:
        credential = Credential.model_validate({"agency_id": agency_id, **hash_secret(secret),
                                                "created_at": now or utc_now()})
    except ValidationError as exc:
        raise ConfigError(f"not an agency id: {agency_id!r}") from exc
    with _locked(path) as current:
        write_private_json(path, CredentialFile(credentials={**current.credentials, credential_id: credential}))
    return f"{credential_id}.{secret}"


def revoke_credential(path: Path, credential_id: str, *, now: datetime | None = None) -> None:
    """Revoke a credential from the next request on. The entry stays, with its revocation time, as a record."""
    with _locked(path) as current:
        credential = current.credentials.get(credential_id)
        if credential is None:
            raise ConfigError(f"no gateway credential {credential_id!r} in {path}")
        if credential.revoked_at is not None:
            return
        revoked = credential.model_copy(update={"revoked_at": now or utc_now()})
        write_private_json(path, CredentialFile(credentials={**current.credentials, credential_id: revoked}))


class CredentialStore:
    """The credentials file as the running gateway sees it: re-read when it changes, verified per request."""

    def __init__(self, path: Path) -> None:
        """Load `path` now. A missing, malformed or world-readable file is a ConfigError at start-up."""
        self.path = path
        self._lock = threading.Lock()
        self._verifier = Verifier()
        self._stamp: tuple[int, int, int] | None = None
        self._content = CredentialFile()
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._current(strict=True)

    def _current(self, *, strict: bool = False) -> CredentialFile:
        """The file's content, re-read if it changed. After start-up a bad file fails closed (no credentials)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            with self._lock:
                if stamp != self._stamp:
                    self._content, self._stamp = _read(self.path), stamp
                return self._content
        except (OSError, ConfigError) as exc:
            if strict:
                raise ConfigError(str(exc)) from exc
            _log.error("gateway.credentials_unreadable", path=str(self.path), error=type(exc).__name__)
            with self._lock:
                self._content, self._stamp = CredentialFile(), None
            return self._content

    def authenticate(self, authorization: str | None) -> tuple[str, Credential] | None:
        """The (credential id, credential) a bearer ``Authorization`` header proves, or None."""
        parts = (authorization or "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        credential_id, _, secret = parts[1].partition(".")
        if not _CREDENTIAL_ID.match(credential_id) or not secret:
            return None
        stored = self._current().credentials.get(credential_id)
        if stored is None:
            self._verifier.verify(None, secret)  # the same work as a wrong secret: timing tells nothing
            return None
        fingerprint = hashlib.sha256(secret.encode()).digest()
        remembered = self._verified.get(credential_id)
        if remembered is not None and remembered[0] == stored.hash and hmac.compare_digest(remembered[1], fingerprint):
            valid = True
        else:
            valid = self._verifier.verify(stored, secret)
            if valid:
                self._verified[credential_id] = (stored.hash, fingerprint)
        if stored.revoked_at is not None:
            self._verified.pop(credential_id, None)
            return None
        return (credential_id, stored) if valid else None


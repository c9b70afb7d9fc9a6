"""
Officer accounts for the audit dashboard: who may read the audit trail, and how much of it.

Two roles, because reading *about a person* and checking *that the system
works* are different powers:

- ``information-governance``: may find a person by name and date of birth,
  read their chronology (every decision, delivery and view about them) and
  export it for a subject access request or a domestic homicide review;
- ``auditor``: may search by token and read flows between agencies, monthly
  statistics and the log's integrity, but never open a person's chronology
  or turn a name into a token.

Why it is built this way (as `safebus.consumers.key_adults`, whose reasoning
applies unchanged):

- **Passwords are never stored**: a salted scrypt hash each (16 MiB, ~50 ms:
  the gateway's parameters), compared in constant time.
- **An unknown officer id costs the same as a wrong password**: one scrypt
  against a dummy hash, so timing does not reveal which ids exist; at most a
  few scrypts run at once.
- **One JSON file, mode 0600, replaced atomically under a lock**, re-read by
  a running dashboard when it changes, so a removed account or a reset
  password applies from the next request.
- **A session is bound to the password and the role**: the credential
  version changes when either does, so demoting an officer ends their
  sessions at once.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.errors import ConfigError
from safebus.logs import get_logger

__all__ = ["MIN_PASSWORD_LENGTH", "Officer", "OfficerRole", "Officers", "default_officers_path"]

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted: long enough that the scrypt cost makes guessing slow (NCSC: length over rules)."""

_MAX_PASSWORD_BYTES = 1024
"""Longest password hashed: a bigger "password" is refused before scrypt, not fed to it."""

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _HASH_BYTES = 2**14, 8, 1, 32  # 16 MiB, ~50 ms on this project's machines
_KDF_SLOTS = 4
"""Concurrent scrypt runs allowed: each takes 16 MiB, so a burst of guesses must not exhaust memory."""

OfficerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]

_log = get_logger("consumers.officers")


class OfficerRole(StrEnum):
    """What an officer may see on the audit dashboard."""

    INFORMATION_GOVERNANCE = "information-governance"
    AUDITOR = "auditor"


@dataclass(frozen=True, kw_only=True)
class Officer:
    """An officer as the dashboard sees them: never their password or its hash."""

    user_id: str
    role: OfficerRole
    display_name: str
    credential_version: str
    """Changes whenever the password or the role does; sessions carry it so either change ends older sessions."""


class _Account(BaseModel):
    """One account as stored: the salted scrypt hash of the password, never the password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: OfficerRole
    display_name: str = Field(min_length=1, max_length=100)
    kdf: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2**10)
    r: int = Field(ge=1)
    p: int = Field(ge=1)
    salt: str
    hash: str
    password_set_at: datetime

    def matches(self, password: str) -> bool:
        """Whether `password` hashes to this account's hash (constant-time comparison)."""
        derived = _scrypt(password, base64.b64decode(self.salt), n=self.n, r=self.r, p=self.p)
        return hmac.compare_digest(derived, base64.b64decode(self.hash))

    def public(self, user_id: str) -> Officer:
        """The account without its secret parts."""
        version = hashlib.sha256(f"{self.salt}|{self.hash}|{self.role.value}".encode()).hexdigest()[:16]
        return Officer(user_id=user_id, role=self.role, display_name=self.display_name, credential_version=version)


class _AccountFile(BaseModel):
    """The accounts file: officer id -> account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["safebus-audit-officers/1"] = "safebus-audit-officers/1"
    accounts: dict[OfficerId, _Account] = Field(default_factory=dict)


def default_officers_path(state_dir: Path) -> Path:
    """Where the officer accounts live in a state directory."""
    return state_dir / "audit" / "officers.json"


def _scrypt(password: str, salt: bytes, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hashed(password: str, now: datetime) -> dict[str, object]:
    """The stored fields for a new password. Raises ConfigError if it is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"an officer password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > _MAX_PASSWORD_BYTES:
        raise ConfigError(f"an officer password may have at most {_MAX_PASSWORD_BYTES} bytes")
    salt = os.urandom(16)
    return {"n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": _b64(salt), "hash": _b64(_scrypt(password, salt)),
            "password_set_at": now}


_DUMMY = _Account(role=OfficerRole.AUDITOR, display_name="dummy", n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                  salt=_b64(bytes(16)), hash=_b64(bytes(_HASH_BYTES)), password_set_at=datetime(2026, 1, 1, tzinfo=UTC))
"""Checked when the officer id is unknown, so that answer takes as long as a wrong password."""


class Officers:
    """
    The officer accounts file, as a running dashboard and an administrator see it.

    Reads follow the file (re-read when it changes); writes take the file's
    lock, re-read it, and replace it atomically.  Raises ConfigError when the
    file is malformed or readable by other users.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        """Use the accounts at `path` (created on the first `add`)."""
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._kdf_slots = threading.BoundedSemaphore(_KDF_SLOTS)
        self._stamp: tuple[int, int, int] | None = None
        self._content = _AccountFile()

    def _current(self) -> _AccountFile:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._content, self._stamp = _AccountFile(), None
                return self._content
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._content, self._stamp = _read(self.path), stamp
            return self._content

    def get(self, user_id: str) -> Officer | None:
        """The officer `user_id`, or None."""
        account = self._current().accounts.get(user_id)
        return account.public(user_id) if account else None

    def all(self) -> list[Officer]:
        """Every officer, by id."""
        return [a.public(user_id) for user_id, a in sorted(self._current().accounts.items())]

    def authenticate(self, user_id: str, password: str) -> Officer | None:
        """
        The officer whose id and password these are, or None.

        Runs exactly one scrypt whatever the outcome (an unknown id is checked
        against a dummy hash), so neither the answer nor its timing says
        whether the id exists.
        """
        if len(password.encode()) > _MAX_PASSWORD_BYTES:
            password = ""  # still one scrypt, below; cannot match a stored password (those are shorter)
        account = self._current().accounts.get(user_id)
        with self._kdf_slots:
            valid = (account or _DUMMY).matches(password)
        if account is None or not valid:
            return None
        return account.public(user_id)

    def add(self, user_id: str, *, role: OfficerRole, display_name: str, password: str) -> Officer:
        """
        Create an account and return it.

        Raises ConfigError if the id is taken or malformed, a field is invalid,
        or the password is shorter than `MIN_PASSWORD_LENGTH`.
        """
        hashed = _hashed(password, self._clock())
        try:
            account = _Account.model_validate({"role": role, "display_name": display_name, **hashed})
            _AccountFile(accounts={user_id: account})
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise ConfigError(f"invalid officer account ({fields})") from exc
        with _locked(self.path) as current:
            if user_id in current.accounts:
                raise ConfigError(f"officer id {user_id!r} already has an account")
            _write(self.path, _AccountFile(accounts={**current.accounts, user_id: account}))
        _log.info("officers.added", user_id=user_id, role=role.value)
        return account.public(user_id)

    def set_role(self, user_id: str, role: OfficerRole) -> Officer:
        """Change an officer's role, ending their sessions. Raises ConfigError for an unknown id."""
        return self._update(user_id, {"role": role}, "officers.role_changed")

    def reset_password(self, user_id: str, password: str) -> Officer:
        """Give `user_id` a new password, ending their sessions. Raises ConfigError for an unknown id."""
        return self._update(user_id, _hashed(password, self._clock()), "officers.password_reset")

    def _update(self, user_id: str, changes: dict[str, object], event: str) -> Officer:
        with _locked(self.path) as current:
            account = current.accounts.get(user_id)
            if account is None:
                raise ConfigError(f"no officer account {user_id!r}")
            updated = account.model_copy(update=changes)
            _write(self.path, _AccountFile(accounts={**current.accounts, user_id: updated}))
        _log.info(event, user_id=user_id)
        return updated.public(user_id)

    def remove(self, user_id: str) -> None:
        """Delete `user_id`'s account; their sessions end with it. Raises ConfigError for an unknown id."""
        with _locked(self.path) as current:
            if user_id not in current.accounts:
                raise ConfigError(f"no officer account {user_id!r}")
            _write(self.path, _AccountFile(accounts={k: v for k, v in current.accounts.items() if k != user_id}))
        _log.info("officers.removed", user_id=user_id)


def _read(path: Path) -> _AccountFile:
    """Read the accounts file. Raises ConfigError if it is malformed or open to other users."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"officer accounts {path} are open to other users (mode {mode & 0o777:o}); chmod 600")
    try:
        return _AccountFile.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"invalid officer accounts {path}: {exc.error_count()} errors") from exc


def _write(path: Path, content: _AccountFile) -> None:
    """Replace the file atomically with a 0600 file, so a reader never sees half of it."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[_AccountFile]:
    """Hold the file's lock for a read-modify-write and yield its content (empty if there is no file yet)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _read(path) if path.exists() else _AccountFile()
    finally:
        os.close(fd)  # releases the lock

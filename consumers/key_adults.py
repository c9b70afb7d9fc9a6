"""
Key Adult accounts: who at each education setting may read its Operation Encompass inbox.

A setting's Key Adult is its designated safeguarding lead, or a deputy with
Level 3 safeguarding training; many schools nominate two (domain reference A2).
Each account is a staff id bound to exactly one setting URN, and that binding
is what the school inbox uses to decide whose alerts a person may see.

Why it is built this way:

- **Passwords are never stored.**  The file keeps a salted scrypt hash per
  account (16 MiB, ~50 ms: the gateway's parameters), with a fresh 128-bit salt,
  so a copied file does not give away the passwords and equal passwords do not
  look equal.  Hashes are compared in constant time.
- **An unknown staff id costs the same as a wrong password.**  It still runs
  one scrypt against a dummy hash, so the login page's timing does not tell an
  attacker which staff ids exist.  At most a few scrypts run at once, so a burst
  of guesses cannot exhaust memory.
- **One JSON file, mode 0600, replaced atomically under a lock.**  It is small
  (a few accounts per setting), reviewable, and a reader never sees half of it.
  A running server re-reads it when it changes, so a password reset or a
  removed account applies from the next request without a restart.
- **A session is bound to the password.**  `KeyAdult.credential_version`
  changes whenever the password does, so resetting a password ends every
  session signed in with the old one.
- **No personal detail beyond what delivery needs.**  A display name for the
  page header and a work e-mail address for the "an alert is waiting" notice.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.directory import AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.logs import get_logger
from safebus.schemas._base import URN
from safebus.schemas.encompass import KeyAdultRole

__all__ = [
    "MIN_PASSWORD_LENGTH", "EducationSetting", "KeyAdult", "KeyAdults", "default_key_adults_path",
    "education_settings", "ensure_synthetic_key_adults", "synthetic_staff_id",
]

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted: long enough that the scrypt cost makes guessing slow (NCSC: length over rules)."""

_MAX_PASSWORD_BYTES = 1024
"""Longest password hashed: a bigger "password" is refused before scrypt, not fed to it."""

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _HASH_BYTES = 2**14, 8, 1, 32  # 16 MiB, ~50 ms on this project's machines
_KDF_SLOTS = 4
"""Concurrent scrypt runs allowed: each takes 16 MiB, so a burst of guesses must not exhaust memory."""

_STAFF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
StaffId = Annotated[str, Field(pattern=_STAFF_ID_PATTERN)]

_log = get_logger("consumers.key_adults")


@dataclass(frozen=True, kw_only=True)
class EducationSetting:
    """An education setting as the school inbox needs it: URN, the agency that speaks for it, its name."""

    urn: str
    agency_id: str
    name: str


def education_settings(directory: Directory) -> dict[str, EducationSetting]:
    """Every onboarded school in `directory`, by URN."""
    return {
        school.urn: EducationSetting(urn=school.urn, agency_id=school.id, name=school.name)
        for school in directory.of_kind(AgencyKind.SCHOOL) if school.urn
    }


@dataclass(frozen=True, kw_only=True)
class KeyAdult:
    """A Key Adult or deputy as the inbox sees them: never their password or its hash."""

    staff_id: str
    setting_urn: str
    role: KeyAdultRole
    display_name: str
    email: str
    credential_version: str
    """Changes whenever the password does; sessions carry it so a reset ends older sessions."""


class _Account(BaseModel):
    """One account as stored: the salted scrypt hash of the password, never the password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setting_urn: URN
    role: KeyAdultRole
    display_name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$", max_length=254)
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

    def public(self, staff_id: str) -> KeyAdult:
        """The account without its secret parts."""
        version = hashlib.sha256(f"{self.salt}|{self.hash}".encode()).hexdigest()[:16]
        return KeyAdult(staff_id=staff_id, setting_urn=self.setting_urn, role=self.role,
                        display_name=self.display_name, email=self.email, credential_version=version)


class _AccountFile(BaseModel):
    """The accounts file: staff id -> account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["safebus-key-adults/1"] = "safebus-key-adults/1"
    accounts: dict[StaffId, _Account] = Field(default_factory=dict)


def default_key_adults_path(state_dir: Path) -> Path:
    """Where the Key Adult accounts live in a state directory."""
    return state_dir / "school-inbox" / "key-adults.json"


def _scrypt(password: str, salt: bytes, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hashed(password: str, now: datetime) -> dict[str, object]:
    """The stored fields for a new password. Raises ConfigError if it is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"a Key Adult password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > _MAX_PASSWORD_BYTES:
        raise ConfigError(f"a Key Adult password may have at most {_MAX_PASSWORD_BYTES} bytes")
    salt = os.urandom(16)
    return {"n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": _b64(salt), "hash": _b64(_scrypt(password, salt)),
            "password_set_at": now}


_DUMMY = _Account(setting_urn="999999", role=KeyAdultRole.KEY_ADULT, display_name="dummy", email="x@invalid.example",
                  n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, salt=_b64(bytes(16)), hash=_b64(bytes(_HASH_BYTES)),
                  password_set_at=datetime(2026, 1, 1, tzinfo=UTC))
"""Checked when the staff id is unknown, so that answer takes as long as a wrong password."""


class KeyAdults:
    """
    The Key Adult accounts file, as a running inbox and an administrator see it.

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

    # ------------------------------------------------------------------ reading

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

    def get(self, staff_id: str) -> KeyAdult | None:
        """The account of `staff_id`, or None."""
        account = self._current().accounts.get(staff_id)
        return account.public(staff_id) if account else None

    def for_setting(self, urn: str, role: KeyAdultRole | None = None) -> list[KeyAdult]:
        """The setting's Key Adults (of one `role`, or all), Key Adults before deputies, then by staff id."""
        order = {KeyAdultRole.KEY_ADULT: 0, KeyAdultRole.DEPUTY: 1}
        found = [a.public(staff_id) for staff_id, a in self._current().accounts.items()
                 if a.setting_urn == urn and (role is None or a.role is role)]
        return sorted(found, key=lambda k: (order[k.role], k.staff_id))

    def authenticate(self, staff_id: str, password: str) -> KeyAdult | None:
        """
        The Key Adult whose staff id and password these are, or None.

        Runs exactly one scrypt whatever the outcome (an unknown staff id is
        checked against a dummy hash), so neither the answer nor its timing
        says whether the staff id exists.
        """
        if len(password.encode()) > _MAX_PASSWORD_BYTES:
            password = ""  # still one scrypt, below; cannot match a stored password (those are shorter)
        account = self._current().accounts.get(staff_id)
        with self._kdf_slots:
            valid = (account or _DUMMY).matches(password)
        if account is None or not valid:
            return None
        return account.public(staff_id)

    # ------------------------------------------------------------------ writing

    def add(self, staff_id: str, *, setting_urn: str, role: KeyAdultRole, display_name: str, email: str,
            password: str) -> KeyAdult:
        """
        Create an account and return it.

        Raises ConfigError if the staff id is taken or malformed, a field is
        invalid, or the password is shorter than `MIN_PASSWORD_LENGTH`.
        """
        if not re.fullmatch(_STAFF_ID_PATTERN, staff_id):
            raise ConfigError("a staff id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        hashed = _hashed(password, self._clock())
        try:
            account = _Account.model_validate({"setting_urn": setting_urn, "role": role, "display_name": display_name,
                                               "email": email, **hashed})
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise ConfigError(f"invalid Key Adult account ({fields})") from exc
        with _locked(self.path) as current:
            if staff_id in current.accounts:
                raise ConfigError(f"staff id {staff_id!r} already has an account")
            _write(self.path, _AccountFile(accounts={**current.accounts, staff_id: account}))
        _log.info("key_adults.added", staff_id=staff_id, setting_urn=setting_urn, role=role.value)
        return account.public(staff_id)

    def reset_password(self, staff_id: str, password: str) -> KeyAdult:
        """Give `staff_id` a new password, ending their sessions. Raises ConfigError for an unknown staff id."""
        hashed = _hashed(password, self._clock())
        with _locked(self.path) as current:
            account = current.accounts.get(staff_id)
            if account is None:
                raise ConfigError(f"no Key Adult account {staff_id!r}")
            updated = account.model_copy(update=hashed)
            _write(self.path, _AccountFile(accounts={**current.accounts, staff_id: updated}))
        _log.info("key_adults.password_reset", staff_id=staff_id)
        return updated.public(staff_id)

    def remove(self, staff_id: str) -> None:
        """Delete `staff_id`'s account; their sessions end with it. Raises ConfigError for an unknown staff id."""
        with _locked(self.path) as current:
            if staff_id not in current.accounts:
                raise ConfigError(f"no Key Adult account {staff_id!r}")
            _write(self.path, _AccountFile(accounts={k: v for k, v in current.accounts.items() if k != staff_id}))
        _log.info("key_adults.removed", staff_id=staff_id)


def _read(path: Path) -> _AccountFile:
    """Read the accounts file. Raises ConfigError if it is malformed or open to other users."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"Key Adult accounts {path} are open to other users (mode {mode & 0o777:o}); chmod 600")
    try:
        return _AccountFile.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"invalid Key Adult accounts {path}: {exc.error_count()} errors") from exc


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


def synthetic_staff_id(urn: str, role: KeyAdultRole) -> str:
    """The staff id `ensure_synthetic_key_adults` gives a setting's Key Adult or deputy."""
    return f"{urn}-{'ka' if role is KeyAdultRole.KEY_ADULT else 'deputy'}"


def ensure_synthetic_key_adults(key_adults: KeyAdults, settings: Iterable[EducationSetting], *,
                                password: str) -> list[KeyAdult]:
    """
    Give each synthetic setting one Key Adult and one deputy (demo and tests only), and return them all.

    Staff ids are ``<urn>-ka`` and ``<urn>-deputy``; e-mail addresses are
    ``dsl@<agency>.example`` (the contact in the synthetic directory) and
    ``deputy-dsl@<agency>.example``.  Accounts that exist already are left as
    they are, so this is safe to run again.  Every account created gets
    `password`; never use this for a real setting.
    """
    made: list[KeyAdult] = []
    for setting in settings:
        for role, title, mailbox in ((KeyAdultRole.KEY_ADULT, "Key Adult", "dsl"),
                                     (KeyAdultRole.DEPUTY, "Deputy Key Adult", "deputy-dsl")):
            staff_id = synthetic_staff_id(setting.urn, role)
            existing = key_adults.get(staff_id)
            made.append(existing or key_adults.add(
                staff_id, setting_urn=setting.urn, role=role, display_name=f"{title}, {setting.name} (synthetic)",
                email=f"{mailbox}@{setting.agency_id}.example", password=password))
    return made

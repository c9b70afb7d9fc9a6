"""
Password-account files: the people who sign in to a web page with an id and a password.

Key Adults sign in to their setting's school inbox
(`safebus.consumers.inbox.key_adults`) and officers to the audit dashboard
(`safebus.consumers.audit.officers`).  Each kind keeps its own file, format and
account fields; this module holds what they share, so that both get the same
hashing, timing and file handling.

Why it is built this way:

- **Passwords are never stored.**  The file keeps a salted scrypt hash per
  account (16 MiB, ~50 ms: the gateway's parameters), with a fresh 128-bit salt,
  so a copied file does not give away the passwords and equal passwords do not
  look equal.  Hashes are compared in constant time.
- **An unknown id costs the same as a wrong password.**  It still runs one
  scrypt against a dummy hash, so the login page's timing does not tell an
  attacker which ids exist.  At most a few scrypts run at once, so a burst of
  guesses cannot exhaust memory.
- **One JSON file, mode 0600, replaced atomically under a lock.**  It is small
  (tens of accounts), reviewable, and a reader never sees half of it.  A running
  server re-reads it when it changes, so a password reset or a removed account
  applies from the next request without a restart.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from safebus.errors import ConfigError

__all__ = [
    "ACCOUNT_ID_PATTERN", "MIN_PASSWORD_LENGTH", "AccountFile", "AccountId", "PasswordAccounts", "PasswordHash",
    "hash_password",
]

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted: long enough that the scrypt cost makes guessing slow (NCSC: length over rules)."""

_MAX_PASSWORD_BYTES = 1024
"""Longest password hashed: a bigger "password" is refused before scrypt, not fed to it."""

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _HASH_BYTES = 2**14, 8, 1, 32  # 16 MiB, ~50 ms on this project's machines
_KDF_SLOTS = 4
"""Concurrent scrypt runs allowed: each takes 16 MiB, so a burst of guesses must not exhaust memory."""

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""An account id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""

AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]

_HASH_FIELDS = ("kdf", "n", "r", "p", "salt", "hash", "password_set_at")


class PasswordHash(BaseModel):
    """
    The stored secret of one account: the salted scrypt hash of its password, never the password.

    Each kind of account subclasses this with its own fields (who the person
    is); in the file those come first and the hash fields last.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

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

    @model_serializer(mode="wrap")
    def _hash_fields_last(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """
        Write the account's own fields before the hash fields.

        Pydantic puts a base class's fields first; the files have always read
        "who" before "hash", and a rewrite should change no line it need not.
        """
        data: dict[str, object] = handler(self)
        own = {key: value for key, value in data.items() if key not in _HASH_FIELDS}
        return own | {key: data[key] for key in _HASH_FIELDS if key in data}


AccountT = TypeVar("AccountT", bound=PasswordHash)


class AccountFile(BaseModel, Generic[AccountT]):
    """
    An accounts file: its format, then account id -> account.

    Each kind of account subclasses ``AccountFile[ItsAccount]`` and narrows
    `format` to a ``Literal`` with that literal as its default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    accounts: dict[AccountId, AccountT] = Field(default_factory=dict)

    @classmethod
    def holding(cls, accounts: Mapping[str, AccountT] | None = None) -> Self:
        """
        A file of this format holding `accounts` (none by default).

        Raises pydantic's ValidationError if an id is malformed.
        """
        return cls.model_validate({"accounts": dict(accounts or {})})


def _scrypt(password: str, salt: bytes, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _with_article(what: str) -> str:
    """`what` after its indefinite article: "a Key Adult", "an officer"."""
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def hash_password(password: str, now: datetime, *, what: str) -> dict[str, object]:
    """
    The `PasswordHash` fields for a new `password` set at `now`, with a fresh salt.

    Raises ConfigError, naming `what` kind of account ("Key Adult",
    "officer"), if the password is shorter than `MIN_PASSWORD_LENGTH`
    characters or longer than 1024 bytes.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"{_with_article(what)} password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > _MAX_PASSWORD_BYTES:
        raise ConfigError(f"{_with_article(what)} password may have at most {_MAX_PASSWORD_BYTES} bytes")
    salt = os.urandom(16)
    return {"n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": _b64(salt), "hash": _b64(_scrypt(password, salt)),
            "password_set_at": now}


_DUMMY = PasswordHash(n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, salt=_b64(bytes(16)), hash=_b64(bytes(_HASH_BYTES)),
                      password_set_at=datetime(2026, 1, 1, tzinfo=UTC))
"""Checked when the id is unknown, so that answer takes as long as a wrong password."""


class PasswordAccounts(Generic[AccountT]):
    """
    One accounts file as a running server and an administrator see it, for one kind of account.

    Reads follow the file (re-read when its inode, mtime or size changes);
    writes take the file's lock, re-read it, and replace it atomically.  It
    deals in stored accounts; the caller turns them into what its pages may
    see and logs what changed.  Raises ConfigError when the file is malformed
    or readable by other users.
    """

    def __init__(self, path: Path, *, file_model: type[AccountFile[AccountT]], account_model: type[AccountT],
                 what: str, id_name: str, clock: Callable[[], datetime] | None = None) -> None:
        """
        Use the accounts at `path` (created on the first `add`).

        `what` names the kind of account in error messages ("Key Adult"), and
        `id_name` its id ("staff id").
        """
        self.path = path
        self._file_model = file_model
        self._account_model = account_model
        self._what = what
        self._id_name = id_name
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._kdf_slots = threading.BoundedSemaphore(_KDF_SLOTS)
        self._stamp: tuple[int, int, int] | None = None
        self._content = file_model.holding()

    # ------------------------------------------------------------------ reading

    def accounts(self) -> Mapping[str, AccountT]:
        """The accounts as the file has them now, by id (none if there is no file)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._content, self._stamp = self._file_model.holding(), None
                return self._content.accounts
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._content, self._stamp = _read(self.path, self._file_model, self._what), stamp
            return self._content.accounts

    def authenticate(self, account_id: str, password: str) -> AccountT | None:
        """
        The account whose id and password these are, or None.

        Runs exactly one scrypt whatever the outcome (an unknown id is checked
        against a dummy hash), so neither the answer nor its timing says
        whether the id exists.
        """
        if len(password.encode()) > _MAX_PASSWORD_BYTES:
            password = ""  # still one scrypt, below; cannot match a stored password (those are shorter)
        account = self.accounts().get(account_id)
        with self._kdf_slots:
            valid = (account or _DUMMY).matches(password)
        if account is None or not valid:
            return None
        return account

    # ------------------------------------------------------------------ writing

    def hash_password(self, password: str) -> dict[str, object]:
        """The hash fields for a new `password`, set now. Raises ConfigError if it is too short or too long."""
        return hash_password(password, self._clock(), what=self._what)

    def add(self, account_id: str, password: str, fields: Mapping[str, object]) -> AccountT:
        """
        Create the account `account_id` with `fields` and `password`, and return it.

        Raises ConfigError if the password is too short or too long, a field
        or the id is invalid (naming them), or the id already has an account.
        """
        hashed = self.hash_password(password)
        try:
            account = self._account_model.model_validate({**fields, **hashed})
            self._file_model.holding({account_id: account})
        except ValidationError as exc:
            names = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise ConfigError(f"invalid {self._what} account ({names})") from exc
        with _locked(self.path, self._file_model, self._what) as current:
            if account_id in current.accounts:
                raise ConfigError(f"{self._id_name} {account_id!r} already has an account")
            write_private_json(self.path, self._file_model.holding({**current.accounts, account_id: account}))
        return account

    def update(self, account_id: str, changes: Mapping[str, object]) -> AccountT:
        """Apply `changes` to the account `account_id` and return it. Raises ConfigError for an unknown id."""
        with _locked(self.path, self._file_model, self._what) as current:
            account = current.accounts.get(account_id)
            if account is None:
                raise ConfigError(f"no {self._what} account {account_id!r}")
            updated = account.model_copy(update=changes)
            write_private_json(self.path, self._file_model.holding({**current.accounts, account_id: updated}))
        return updated

    def remove(self, account_id: str) -> None:
        """Delete the account `account_id`. Raises ConfigError for an unknown id."""
        with _locked(self.path, self._file_model, self._what) as current:
            if account_id not in current.accounts:
                raise ConfigError(f"no {self._what} account {account_id!r}")
            kept = {k: v for k, v in current.accounts.items() if k != account_id}
            write_private_json(self.path, self._file_model.holding(kept))


def _read(path: Path, file_model: type[AccountFile[AccountT]], what: str) -> AccountFile[AccountT]:
    """Read the accounts file. Raises ConfigError if it is malformed or open to other users."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"{what} accounts {path} are open to other users (mode {mode & 0o777:o}); chmod 600")
    try:
        return file_model.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} accounts {path}: {exc.error_count()} errors") from exc


def write_private_json(path: Path, content: BaseModel) -> None:
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
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold `path`'s lock file (``<name>.lock``, 0600) for a read-modify-write of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _locked(path: Path, file_model: type[AccountFile[AccountT]], what: str) -> Iterator[AccountFile[AccountT]]:
    """Hold the file's lock for a read-modify-write and yield its content (empty if there is no file yet)."""
    with exclusive_lock(path):
        yield _read(path, file_model, what) if path.exists() else file_model.holding()

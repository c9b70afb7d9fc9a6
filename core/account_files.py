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
  look equal.  Hashes are compared in constant time (`safebus.passwords`,
  shared with the gateway's credentials).
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

import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.clock import utc_now
from safebus.errors import ConfigError
from safebus.passwords import ScryptHash, Verifier, hash_secret
from safebus.private_files import write_private

__all__ = [
    "ACCOUNT_ID_PATTERN", "MIN_PASSWORD_LENGTH", "AccountFile", "AccountId", "PasswordAccounts", "PasswordHash",
    "exclusive_lock", "hash_password", "refuse_open_to_others", "write_private_json",
]

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted: long enough that the scrypt cost makes guessing slow (NCSC: length over rules)."""

_MAX_PASSWORD_BYTES = 1024
"""Longest password hashed: a bigger "password" is refused before scrypt, not fed to it."""

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""An account id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""

AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]

class PasswordHash(ScryptHash):
    """
    The stored secret of one account: the salted scrypt hash of its password, never the password.

    Each kind of account subclasses this with its own fields (who the person
    is); in the file those come first, then the hash fields, then when the
    password was set (`safebus.passwords` hashes and checks it).
    """

    trailing_fields: ClassVar[tuple[str, ...]] = ("password_set_at",)

    password_set_at: datetime


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
    return {**hash_secret(password), "password_set_at": now}


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
        self._clock = clock or utc_now
        self._lock = threading.Lock()
        self._verifier = Verifier()
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
        if not self._verifier.verify(account, password):
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
    refuse_open_to_others(path, path.stat().st_mode, f"{what} accounts")
    try:
        return file_model.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} accounts {path}: {exc.error_count()} errors") from exc


def refuse_open_to_others(path: Path, mode: int, described: str) -> None:
    """
    Raise ConfigError if `mode` (of `path`, holding `described`) lets other users read or write it.

    Such a file holds secrets' hashes: a copy lets its reader guess offline,
    and a writable one lets them add their own secret.
    """
    if mode & 0o077:
        raise ConfigError(f"{described} {path} are open to other users (mode {mode & 0o777:o}); chmod 600")


def write_private_json(path: Path, content: BaseModel) -> None:
    """Replace the file atomically with a 0600 file (`safebus.private_files`), so a reader never sees half of it."""
    write_private(path, (content.model_dump_json(indent=2) + "\n").encode("utf-8"))


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

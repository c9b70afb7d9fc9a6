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
- **Or the same document in a shared database.**  Web instances on several
  hosts need one set of accounts, so the document can live elsewhere: an
  `AccountSource` says where it is kept, how to tell it changed and how to
  replace it under a lock (the file here; a database row in
  `safebus.consumers.web.account_store`).  Everything above holds for both.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.clock import utc_now
from safebus.errors import ConfigError
from safebus.passwords import ScryptHash, Verifier, hash_secret
from safebus.private_files import write_private

__all__ = [
    "ACCOUNT_ID_PATTERN", "MIN_PASSWORD_LENGTH", "AccountFile", "AccountId", "AccountSource", "FileSource",
    "PasswordAccounts", "PasswordHash", "exclusive_lock", "hash_password", "refuse_open_to_others",
    "write_private_json",
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


class AccountSource(Protocol):
    """Where one kind of accounts is kept, as one JSON document: a file (`FileSource`) or a database row."""

    @property
    def where(self) -> str:
        """Where the document is, for messages."""

    def stamp(self) -> Hashable | None:
        """What changes whenever the document does (checked on every read: cheap); None while there is none."""

    def read(self) -> str | None:
        """The document as it is now; None while there is none.  Raises ConfigError if others may read it."""

    def replace(self, change: Callable[[str | None], str]) -> None:
        """
        Replace the document by `change(current)`, holding a lock no other writer passes meanwhile.

        Nothing is written when `change` raises.
        """


class FileSource:
    """The accounts document in a file: mode 0600, replaced atomically under its ``.lock`` file."""

    def __init__(self, path: Path, *, what: str) -> None:
        """Use `path` (created on the first `replace`) for `what` kind of account ("Key Adult")."""
        self.path = path
        self._what = what

    @property
    def where(self) -> str:
        """The file's path."""
        return str(self.path)

    def stamp(self) -> Hashable | None:
        """The file's inode, modification time and size, or None when there is no file."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def read(self) -> str | None:
        """The file's text (None without a file). Raises ConfigError if it is open to other users."""
        try:
            refuse_open_to_others(self.path, self.path.stat().st_mode, f"{self._what} accounts")
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def replace(self, change: Callable[[str | None], str]) -> None:
        """Re-read the file under its lock and replace it atomically with `change`'s text."""
        with exclusive_lock(self.path):
            text = change(self.read())
            write_private(self.path, text.encode("utf-8"))


class PasswordAccounts(Generic[AccountT]):
    """
    One accounts file as a running server and an administrator see it, for one kind of account.

    Reads follow the document (re-read when its `AccountSource.stamp`
    changes: for the file, its inode, mtime or size); writes take the
    source's lock, re-read it, and replace it whole.  It deals in stored
    accounts; the caller turns them into what its pages may see and logs
    what changed.  Raises ConfigError when the document is malformed or the
    file readable by other users.
    """

    def __init__(self, path: Path, *, file_model: type[AccountFile[AccountT]], account_model: type[AccountT],
                 what: str, id_name: str, clock: Callable[[], datetime] | None = None,
                 source: AccountSource | None = None) -> None:
        """
        Use the accounts at `path` (created on the first `add`), or in `source` when given.

        `what` names the kind of account in error messages ("Key Adult"), and
        `id_name` its id ("staff id").
        """
        self.path = path
        self._source: AccountSource = source or FileSource(path, what=what)
        self._file_model = file_model
        self._account_model = account_model
        self._what = what
        self._id_name = id_name
        self._clock = clock or utc_now
        self._lock = threading.Lock()
        self._verifier = Verifier()
        self._stamp: Hashable | None = None
        self._content = file_model.holding()

    # ------------------------------------------------------------------ reading

    def accounts(self) -> Mapping[str, AccountT]:
        """The accounts as the document has them now, by id (none if there is no document)."""
        stamp = self._source.stamp()
        with self._lock:
            if stamp is None:
                self._content, self._stamp = self._file_model.holding(), None
            elif stamp != self._stamp:
                self._content, self._stamp = self._parse(self._source.read()), stamp
            return self._content.accounts

    def _parse(self, text: str | None) -> AccountFile[AccountT]:
        """The document `text` (None: no accounts). Raises ConfigError if it is malformed."""
        if text is None:
            return self._file_model.holding()
        try:
            return self._file_model.model_validate_json(text)
        except ValidationError as exc:
            raise ConfigError(f"invalid {self._what} accounts {self._source.where}: "
                              f"{exc.error_count()} errors") from exc

    def _rewrite(self, change: Callable[[AccountFile[AccountT]], Mapping[str, AccountT]]) -> None:
        """Replace the accounts by `change(current)` under the source's lock (nothing written if it raises)."""
        self._source.replace(lambda text: _json(self._file_model.holding(change(self._parse(text)))))

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
        def added(current: AccountFile[AccountT]) -> Mapping[str, AccountT]:
            if account_id in current.accounts:
                raise ConfigError(f"{self._id_name} {account_id!r} already has an account")
            return {**current.accounts, account_id: account}

        self._rewrite(added)
        return account

    def update(self, account_id: str, changes: Mapping[str, object]) -> AccountT:
        """Apply `changes` to the account `account_id` and return it. Raises ConfigError for an unknown id."""
        done: list[AccountT] = []

        def updated(current: AccountFile[AccountT]) -> Mapping[str, AccountT]:
            account = current.accounts.get(account_id)
            if account is None:
                raise ConfigError(f"no {self._what} account {account_id!r}")
            done[:] = [account.model_copy(update=changes)]
            return {**current.accounts, account_id: done[0]}

        self._rewrite(updated)
        return done[0]

    def remove(self, account_id: str) -> None:
        """Delete the account `account_id`. Raises ConfigError for an unknown id."""
        def kept(current: AccountFile[AccountT]) -> Mapping[str, AccountT]:
            if account_id not in current.accounts:
                raise ConfigError(f"no {self._what} account {account_id!r}")
            return {k: v for k, v in current.accounts.items() if k != account_id}

        self._rewrite(kept)


def _json(content: BaseModel) -> str:
    """The document as stored: indented JSON and a final newline (a file stays reviewable)."""
    return content.model_dump_json(indent=2) + "\n"


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
    write_private(path, _json(content).encode("utf-8"))


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

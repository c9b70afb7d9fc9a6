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

Why it is built this way (the file, hashing and timing are shared with the
school inbox's Key Adults: `safebus.account_files` explains them):

- **Passwords are never stored**: a salted scrypt hash each, and an unknown
  officer id costs one scrypt like a wrong password, so timing does not
  reveal which ids exist.
- **One JSON file, mode 0600, replaced atomically under a lock**, re-read by
  a running dashboard when it changes, so a removed account or a reset
  password applies from the next request.
- **A session is bound to the password and the role**: the credential
  version changes when either does, so demoting an officer ends their
  sessions at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field

from safebus.account_files import MIN_PASSWORD_LENGTH, AccountFile, AccountSource, PasswordAccounts, PasswordHash
from safebus.logs import get_logger

__all__ = ["MIN_PASSWORD_LENGTH", "Officer", "OfficerRole", "Officers", "default_officers_path"]

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


class _Account(PasswordHash):
    """One account as stored: the officer's role and name, and the salted scrypt hash of their password."""

    role: OfficerRole
    display_name: str = Field(min_length=1, max_length=100)

    def public(self, user_id: str) -> Officer:
        """The account without its secret parts."""
        version = hashlib.sha256(f"{self.salt}|{self.hash}|{self.role.value}".encode()).hexdigest()[:16]
        return Officer(user_id=user_id, role=self.role, display_name=self.display_name, credential_version=version)


class _AccountFile(AccountFile[_Account]):
    """The accounts file: officer id -> account."""

    format: Literal["safebus-audit-officers/1"] = "safebus-audit-officers/1"


def default_officers_path(state_dir: Path) -> Path:
    """Where the officer accounts live in a state directory."""
    return state_dir / "audit" / "officers.json"


class Officers:
    """
    The officer accounts file, as a running dashboard and an administrator see it.

    A change of role (`set_role`) ends the officer's sessions, as a password
    reset does.  Reading, locking and replacing the file are
    `safebus.account_files.PasswordAccounts`'s; raises ConfigError when the
    file is malformed or readable by other users.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None,
                 source: AccountSource | None = None) -> None:
        """Use the accounts at `path` (created on the first `add`), or in `source` (a shared database) when given."""
        self.path = path
        self._accounts = PasswordAccounts(path, file_model=_AccountFile, account_model=_Account, what="officer",
                                          id_name="officer id", clock=clock, source=source)

    def get(self, user_id: str) -> Officer | None:
        """The officer `user_id`, or None."""
        account = self._accounts.accounts().get(user_id)
        return account.public(user_id) if account else None

    def all(self) -> list[Officer]:
        """Every officer, by id."""
        return [a.public(user_id) for user_id, a in sorted(self._accounts.accounts().items())]

    def authenticate(self, user_id: str, password: str) -> Officer | None:
        """
        The officer whose id and password these are, or None.

        Runs exactly one scrypt whatever the outcome (an unknown id is checked
        against a dummy hash), so neither the answer nor its timing says
        whether the id exists.
        """
        account = self._accounts.authenticate(user_id, password)
        return account.public(user_id) if account else None

    def add(self, user_id: str, *, role: OfficerRole, display_name: str, password: str) -> Officer:
        """
        Create an account and return it.

        Raises ConfigError if the id is taken or malformed, a field is invalid,
        or the password is shorter than `MIN_PASSWORD_LENGTH`.
        """
        account = self._accounts.add(user_id, password, {"role": role, "display_name": display_name})
        _log.info("officers.added", user_id=user_id, role=role.value)
        return account.public(user_id)

    def set_role(self, user_id: str, role: OfficerRole) -> Officer:
        """Change an officer's role, ending their sessions. Raises ConfigError for an unknown id."""
        return self._update(user_id, {"role": role}, "officers.role_changed")

    def reset_password(self, user_id: str, password: str) -> Officer:
        """Give `user_id` a new password, ending their sessions. Raises ConfigError for an unknown id."""
        return self._update(user_id, self._accounts.hash_password(password), "officers.password_reset")

    def _update(self, user_id: str, changes: dict[str, object], event: str) -> Officer:
        updated = self._accounts.update(user_id, changes)
        _log.info(event, user_id=user_id)
        return updated.public(user_id)

    def remove(self, user_id: str) -> None:
        """Delete `user_id`'s account; their sessions end with it. Raises ConfigError for an unknown id."""
        self._accounts.remove(user_id)
        _log.info("officers.removed", user_id=user_id)

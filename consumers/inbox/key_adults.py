"""
Key Adult accounts: who at each education setting may read its Operation Encompass inbox.

A setting's Key Adult is its designated safeguarding lead, or a deputy with
Level 3 safeguarding training; many schools nominate two (domain reference A2).
Each account is a staff id bound to exactly one setting URN, and that binding
is what the school inbox uses to decide whose alerts a person may see.

Why it is built this way (the file, hashing and timing are shared with the
audit dashboard's officers: `safebus.account_files` explains them):

- **Passwords are never stored**, only a salted scrypt hash each, and an
  unknown staff id costs one scrypt like a wrong password, so the login
  page's timing does not tell an attacker which staff ids exist.
- **One JSON file, mode 0600, replaced atomically under a lock**, with a few
  accounts per setting; a running inbox re-reads it when it changes.
- **A session is bound to the password.**  `KeyAdult.credential_version`
  changes whenever the password does, so resetting a password ends every
  session signed in with the old one.
- **No personal detail beyond what delivery needs.**  A display name for the
  page header and a work e-mail address for the "an alert is waiting" notice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from safebus.account_files import (
    ACCOUNT_ID_PATTERN,
    MIN_PASSWORD_LENGTH,
    AccountFile,
    AccountSource,
    PasswordAccounts,
    PasswordHash,
)
from safebus.directory import AgencyKind, Directory
from safebus.errors import ConfigError
from safebus.logs import get_logger
from safebus.schemas._base import URN
from safebus.schemas.encompass import KeyAdultRole

__all__ = [
    "MIN_PASSWORD_LENGTH", "EducationSetting", "KeyAdult", "KeyAdults", "default_key_adults_path",
    "education_settings", "ensure_synthetic_key_adults", "synthetic_staff_id",
]

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


class _Account(PasswordHash):
    """One account as stored: who the Key Adult is, and the salted scrypt hash of their password."""

    setting_urn: URN
    role: KeyAdultRole
    display_name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$", max_length=254)

    def public(self, staff_id: str) -> KeyAdult:
        """The account without its secret parts."""
        version = hashlib.sha256(f"{self.salt}|{self.hash}".encode()).hexdigest()[:16]
        return KeyAdult(staff_id=staff_id, setting_urn=self.setting_urn, role=self.role,
                        display_name=self.display_name, email=self.email, credential_version=version)


class _AccountFile(AccountFile[_Account]):
    """The accounts file: staff id -> account."""

    format: Literal["safebus-key-adults/1"] = "safebus-key-adults/1"


def default_key_adults_path(state_dir: Path) -> Path:
    """Where the Key Adult accounts live in a state directory."""
    return state_dir / "school-inbox" / "key-adults.json"


class KeyAdults:
    """
    The Key Adult accounts file, as a running inbox and an administrator see it.

    Each account is bound to one setting; `for_setting` is how the inbox and
    the "an alert is waiting" notice find whom to tell.  The file is followed
    and written as `safebus.account_files.PasswordAccounts` describes.  Raises
    ConfigError when it is malformed or readable by other users.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None,
                 source: AccountSource | None = None) -> None:
        """Use the accounts at `path` (created on the first `add`), or in `source` (a shared database) when given."""
        self.path = path
        self._accounts = PasswordAccounts(path, file_model=_AccountFile, account_model=_Account, what="Key Adult",
                                          id_name="staff id", clock=clock, source=source)

    # ------------------------------------------------------------------ reading

    def get(self, staff_id: str) -> KeyAdult | None:
        """The account of `staff_id`, or None."""
        account = self._accounts.accounts().get(staff_id)
        return account.public(staff_id) if account else None

    def for_setting(self, urn: str, role: KeyAdultRole | None = None) -> list[KeyAdult]:
        """The setting's Key Adults (of one `role`, or all), Key Adults before deputies, then by staff id."""
        order = {KeyAdultRole.KEY_ADULT: 0, KeyAdultRole.DEPUTY: 1}
        found = [a.public(staff_id) for staff_id, a in self._accounts.accounts().items()
                 if a.setting_urn == urn and (role is None or a.role is role)]
        return sorted(found, key=lambda k: (order[k.role], k.staff_id))

    def authenticate(self, staff_id: str, password: str) -> KeyAdult | None:
        """
        The Key Adult whose staff id and password these are, or None.

        Runs exactly one scrypt whatever the outcome (an unknown staff id is
        checked against a dummy hash), so neither the answer nor its timing
        says whether the staff id exists.
        """
        account = self._accounts.authenticate(staff_id, password)
        return account.public(staff_id) if account else None

    # ------------------------------------------------------------------ writing

    def add(self, staff_id: str, *, setting_urn: str, role: KeyAdultRole, display_name: str, email: str,
            password: str) -> KeyAdult:
        """
        Create an account and return it.

        Raises ConfigError if the staff id is taken or malformed, a field is
        invalid, or the password is shorter than `MIN_PASSWORD_LENGTH`.
        """
        if not re.fullmatch(ACCOUNT_ID_PATTERN, staff_id):
            raise ConfigError("a staff id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        account = self._accounts.add(staff_id, password, {"setting_urn": setting_urn, "role": role,
                                                          "display_name": display_name, "email": email})
        _log.info("key_adults.added", staff_id=staff_id, setting_urn=setting_urn, role=role.value)
        return account.public(staff_id)

    def reset_password(self, staff_id: str, password: str) -> KeyAdult:
        """Give `staff_id` a new password, ending their sessions. Raises ConfigError for an unknown staff id."""
        updated = self._accounts.update(staff_id, self._accounts.hash_password(password))
        _log.info("key_adults.password_reset", staff_id=staff_id)
        return updated.public(staff_id)

    def remove(self, staff_id: str) -> None:
        """Delete `staff_id`'s account; their sessions end with it. Raises ConfigError for an unknown staff id."""
        self._accounts.remove(staff_id)
        _log.info("key_adults.removed", staff_id=staff_id)


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

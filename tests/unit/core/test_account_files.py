"""Password-account files: hashing, constant-cost sign-in and the file handling Key Adults and officers share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal
from unittest import mock

import pytest
from pydantic import Field

from safebus import account_files
from safebus.account_files import AccountFile, PasswordAccounts, PasswordHash, hash_password
from safebus.consumers.audit import officers
from safebus.consumers.inbox import key_adults
from safebus.errors import ConfigError
from tests.conftest import FIXED_NOW

PASSWORD = "correct horse battery staple"


class _Member(PasswordHash):
    """A kind of account made up for these tests."""

    name: str = Field(min_length=1)


class _MemberFile(AccountFile[_Member]):
    """The file of those accounts."""

    format: Literal["test-members/1"] = "test-members/1"


@pytest.fixture
def members(tmp_path: Path) -> PasswordAccounts[_Member]:
    """An empty members file in a fresh directory."""
    return _open(tmp_path / "state" / "members.json")


def _open(path: Path) -> PasswordAccounts[_Member]:
    return PasswordAccounts(path, file_model=_MemberFile, account_model=_Member, what="member", id_name="member id",
                            clock=lambda: FIXED_NOW)


class TestHashPassword:
    def test_a_password_is_stored_salted_and_matches_only_itself(self) -> None:
        """The fields hold no password, a fresh salt each time, and match the password and nothing else."""
        first = PasswordHash.model_validate(hash_password(PASSWORD, FIXED_NOW, what="member"))
        second = PasswordHash.model_validate(hash_password(PASSWORD, FIXED_NOW, what="member"))
        assert PASSWORD not in first.model_dump_json()
        assert (first.salt, first.hash) != (second.salt, second.hash)
        assert first.matches(PASSWORD)
        assert not first.matches(PASSWORD + " ")
        assert first.password_set_at == FIXED_NOW

    @pytest.mark.parametrize(("what", "password", "message"), [
        ("Key Adult", "short", "a Key Adult password needs at least 12 characters"),
        ("officer", "short", "an officer password needs at least 12 characters"),
        ("officer", "x" * 1025, "an officer password may have at most 1024 bytes"),
    ])
    def test_a_short_or_huge_password_is_refused_naming_the_kind_of_account(
            self, what: str, password: str, message: str) -> None:
        """The error says whose password it was, with the right article."""
        with pytest.raises(ConfigError, match=f"^{message}$"):
            hash_password(password, FIXED_NOW, what=what)


class TestSigningIn:
    def test_every_attempt_costs_one_scrypt(
            self, members: PasswordAccounts[_Member], monkeypatch: pytest.MonkeyPatch) -> None:
        """Right password, wrong password, unknown id, oversized password: one scrypt each, so timing says nothing."""
        members.add("m-1", PASSWORD, {"name": "M"})
        scrypt = mock.Mock(wraps=hashlib.scrypt)
        monkeypatch.setattr(hashlib, "scrypt", scrypt)
        assert members.authenticate("m-1", PASSWORD) == members.accounts()["m-1"]
        assert members.authenticate("m-1", PASSWORD + "!") is None
        assert members.authenticate("nobody", PASSWORD) is None
        assert members.authenticate("m-1", "x" * 5000) is None
        assert scrypt.call_count == 4

    def test_the_file_is_followed_without_a_restart(self, members: PasswordAccounts[_Member]) -> None:
        """Another handle's add, password change and removal apply to a running one at its next read."""
        running = _open(members.path)
        assert running.authenticate("m-1", PASSWORD) is None
        members.add("m-1", PASSWORD, {"name": "M"})
        assert running.authenticate("m-1", PASSWORD) is not None
        members.update("m-1", members.hash_password("a brand new long password"))
        assert running.authenticate("m-1", PASSWORD) is None
        members.remove("m-1")
        assert running.accounts() == {}


class TestTheFile:
    def test_the_file_is_private_and_keeps_its_fields_in_order(self, members: PasswordAccounts[_Member]) -> None:
        """Mode 0600, no temporary file left behind, the format first, each account's own fields before its hash."""
        members.add("m-1", PASSWORD, {"name": "M"})
        assert members.path.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in members.path.parent.iterdir()) == ["members.json", "members.json.lock"]
        stored = json.loads(members.path.read_text())
        assert list(stored) == ["format", "accounts"]
        assert stored["format"] == "test-members/1"
        assert list(stored["accounts"]["m-1"]) == ["name", "kdf", "n", "r", "p", "salt", "hash", "password_set_at"]

    def test_a_file_open_to_others_or_malformed_is_refused(self, members: PasswordAccounts[_Member]) -> None:
        """Either is a configuration error naming the kind of account, never silently used."""
        members.add("m-1", PASSWORD, {"name": "M"})
        members.path.chmod(0o640)
        with pytest.raises(ConfigError, match=r"member accounts .* are open to other users"):
            _open(members.path).accounts()
        members.path.chmod(0o600)
        members.path.write_text('{"format": "another-format/1"}')
        with pytest.raises(ConfigError, match=r"invalid member accounts .*: 1 errors"):
            _open(members.path).accounts()

    def test_bad_changes_are_refused_with_a_reason(self, members: PasswordAccounts[_Member]) -> None:
        """A malformed id or field, a taken id, or an unknown id for an update or a removal."""
        with pytest.raises(ConfigError, match=r"invalid member account \(accounts\.no spaces\.\[key\]\)"):
            members.add("no spaces", PASSWORD, {"name": "M"})
        with pytest.raises(ConfigError, match=r"invalid member account \(name\)"):
            members.add("m-1", PASSWORD, {"name": ""})
        members.add("m-1", PASSWORD, {"name": "M"})
        with pytest.raises(ConfigError, match="member id 'm-1' already has an account"):
            members.add("m-1", PASSWORD, {"name": "M"})
        with pytest.raises(ConfigError, match="no member account 'm-2'"):
            members.update("m-2", {"name": "N"})
        with pytest.raises(ConfigError, match="no member account 'm-2'"):
            members.remove("m-2")


def test_both_kinds_of_account_share_one_minimum_password_length() -> None:
    """Key Adults and officers re-export the shared constant rather than keep their own."""
    assert key_adults.MIN_PASSWORD_LENGTH == officers.MIN_PASSWORD_LENGTH == account_files.MIN_PASSWORD_LENGTH

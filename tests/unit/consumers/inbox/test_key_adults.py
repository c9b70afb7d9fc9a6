"""Key Adult accounts: who may sign in to a setting's inbox, and what the accounts file gives away (nothing)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safebus.consumers.inbox.key_adults import (
    EducationSetting,
    KeyAdults,
    default_key_adults_path,
    education_settings,
    ensure_synthetic_key_adults,
)
from safebus.errors import ConfigError
from safebus.schemas.encompass import KeyAdultRole
from tests.conftest import FIXED_NOW, Partnership

PASSWORD = "correct horse battery staple"
HOLLOWMERE = EducationSetting(urn="900101", agency_id="school-900101", name="Hollowmere Primary School")
WRENFIELD = EducationSetting(urn="900105", agency_id="school-900105", name="Wrenfield High School")


@pytest.fixture
def accounts(tmp_path: Path) -> KeyAdults:
    """An empty accounts file in a fresh state directory."""
    return KeyAdults(default_key_adults_path(tmp_path / "state"), clock=lambda: FIXED_NOW)


def _add(accounts: KeyAdults, staff_id: str, *, urn: str = "900101", role: KeyAdultRole = KeyAdultRole.KEY_ADULT,
         password: str = PASSWORD) -> None:
    accounts.add(staff_id, setting_urn=urn, role=role, display_name=f"Staff {staff_id}",
                 email=f"{staff_id.lower()}@school-{urn}.example", password=password)


def _count_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real: Callable[..., bytes] = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)  # key_adults calls hashlib.scrypt through the module
    return calls


class TestSigningIn:
    def test_the_right_password_signs_a_key_adult_in_to_their_setting(self, accounts: KeyAdults) -> None:
        """A Key Adult with the right password is recognised, with their setting and role."""
        _add(accounts, "HPS-DSL-1")
        found = accounts.authenticate("HPS-DSL-1", PASSWORD)
        assert found is not None
        assert (found.staff_id, found.setting_urn, found.role) == ("HPS-DSL-1", "900101", KeyAdultRole.KEY_ADULT)

    def test_a_wrong_password_or_unknown_staff_id_signs_nobody_in(self, accounts: KeyAdults) -> None:
        """Near misses fail: a wrong password, a different case, an unknown staff id, an empty password."""
        _add(accounts, "HPS-DSL-1")
        assert accounts.authenticate("HPS-DSL-1", PASSWORD + "!") is None
        assert accounts.authenticate("HPS-DSL-1", PASSWORD.upper()) is None
        assert accounts.authenticate("HPS-DSL-2", PASSWORD) is None
        assert accounts.authenticate("HPS-DSL-1", "") is None

    def test_an_unknown_staff_id_costs_the_same_work_as_a_wrong_password(
            self, accounts: KeyAdults, monkeypatch: pytest.MonkeyPatch) -> None:
        """Timing cannot reveal which staff ids exist: each attempt runs exactly one scrypt."""
        _add(accounts, "HPS-DSL-1")
        calls = _count_scrypt(monkeypatch)
        accounts.authenticate("nobody-here", PASSWORD)
        assert len(calls) == 1
        accounts.authenticate("HPS-DSL-1", "not the password")
        assert len(calls) == 2

    def test_resetting_a_password_retires_the_old_one(self, accounts: KeyAdults) -> None:
        """After a reset only the new password works, and the credential version (which binds sessions) changes."""
        _add(accounts, "HPS-DSL-1")
        before = accounts.get("HPS-DSL-1")
        after = accounts.reset_password("HPS-DSL-1", "a different long password")
        assert accounts.authenticate("HPS-DSL-1", PASSWORD) is None
        assert accounts.authenticate("HPS-DSL-1", "a different long password") is not None
        assert before is not None
        assert before.credential_version != after.credential_version

    def test_a_removed_account_cannot_sign_in(self, accounts: KeyAdults) -> None:
        """Removing a member of staff takes effect at once."""
        _add(accounts, "HPS-DSL-1")
        accounts.remove("HPS-DSL-1")
        assert accounts.authenticate("HPS-DSL-1", PASSWORD) is None
        assert accounts.get("HPS-DSL-1") is None
        with pytest.raises(ConfigError, match="no Key Adult account"):
            accounts.remove("HPS-DSL-1")


class TestAccountsFile:
    def test_the_file_holds_salted_hashes_and_is_private(self, accounts: KeyAdults) -> None:
        """No password in the file, mode 0600, and two people with the same password have different hashes."""
        _add(accounts, "HPS-DSL-1")
        _add(accounts, "HPS-DEP-1", role=KeyAdultRole.DEPUTY)
        text = accounts.path.read_text()
        assert PASSWORD not in text
        stored = json.loads(text)["accounts"]
        assert stored["HPS-DSL-1"]["hash"] != stored["HPS-DEP-1"]["hash"]
        assert stored["HPS-DSL-1"]["salt"] != stored["HPS-DEP-1"]["salt"]
        assert accounts.path.stat().st_mode & 0o777 == 0o600

    def test_a_file_other_users_can_read_is_refused(self, accounts: KeyAdults) -> None:
        """A world-readable accounts file is a configuration error, not silently used."""
        _add(accounts, "HPS-DSL-1")
        accounts.path.chmod(0o644)
        with pytest.raises(ConfigError, match="open to other users"):
            KeyAdults(accounts.path).authenticate("HPS-DSL-1", PASSWORD)

    def test_changes_by_another_process_apply_without_a_restart(self, accounts: KeyAdults) -> None:
        """A running inbox sees an account added or reset through another handle on the same file."""
        running = KeyAdults(accounts.path)
        assert running.get("HPS-DSL-1") is None
        _add(accounts, "HPS-DSL-1")
        assert running.authenticate("HPS-DSL-1", PASSWORD) is not None
        accounts.reset_password("HPS-DSL-1", "a brand new long password")
        assert running.authenticate("HPS-DSL-1", PASSWORD) is None

    def test_bad_accounts_are_refused(self, accounts: KeyAdults) -> None:
        """A short password, a taken staff id, a malformed URN or staff id are all refused with a reason."""
        with pytest.raises(ConfigError, match="at least 12 characters"):
            _add(accounts, "HPS-DSL-1", password="short")
        _add(accounts, "HPS-DSL-1")
        with pytest.raises(ConfigError, match="already has an account"):
            _add(accounts, "HPS-DSL-1")
        with pytest.raises(ConfigError, match="setting_urn"):
            _add(accounts, "HPS-DSL-2", urn="12345")
        with pytest.raises(ConfigError, match="staff id"):
            accounts.add("no spaces allowed", setting_urn="900101", role=KeyAdultRole.KEY_ADULT, display_name="A",
                         email="a@school-900101.example", password=PASSWORD)
        with pytest.raises(ConfigError, match="email"):
            accounts.add("HPS-DSL-3", setting_urn="900101", role=KeyAdultRole.KEY_ADULT, display_name="A",
                         email="not an address", password=PASSWORD)


class TestWhoIsAtASetting:
    def test_for_setting_lists_that_settings_staff_key_adults_first(self, accounts: KeyAdults) -> None:
        """Each setting sees only its own Key Adults and deputies, and can ask for one role."""
        _add(accounts, "HPS-DEP-1", role=KeyAdultRole.DEPUTY)
        _add(accounts, "HPS-DSL-1")
        _add(accounts, "WHS-DSL-1", urn="900105")
        assert [k.staff_id for k in accounts.for_setting("900101")] == ["HPS-DSL-1", "HPS-DEP-1"]
        assert [k.staff_id for k in accounts.for_setting("900101", KeyAdultRole.DEPUTY)] == ["HPS-DEP-1"]
        assert [k.staff_id for k in accounts.for_setting("900105")] == ["WHS-DSL-1"]
        assert accounts.for_setting("900999") == []


class TestSyntheticKeyAdults:
    def test_each_synthetic_school_gets_a_key_adult_and_a_deputy(
            self, accounts: KeyAdults, partnership: Partnership) -> None:
        """The demo partnership's schools each get two accounts, the Key Adult at the directory's DSL address."""
        settings = education_settings(partnership.directory)
        made = ensure_synthetic_key_adults(accounts, settings.values(), password=PASSWORD)
        assert len(made) == 2 * len(settings) == 12
        for urn, setting in settings.items():
            [key_adult] = accounts.for_setting(urn, KeyAdultRole.KEY_ADULT)
            [deputy] = accounts.for_setting(urn, KeyAdultRole.DEPUTY)
            school = partnership.directory.school_by_urn(urn)
            assert school is not None
            assert key_adult.email in {c.email for c in school.contacts}
            assert deputy.email == f"deputy-dsl@{setting.agency_id}.example"
            assert accounts.authenticate(deputy.staff_id, PASSWORD) == deputy

    def test_running_it_again_changes_nothing(self, accounts: KeyAdults) -> None:
        """Existing accounts are kept as they are, including a password someone has since changed."""
        [key_adult, _deputy] = ensure_synthetic_key_adults(accounts, [HOLLOWMERE], password=PASSWORD)
        accounts.reset_password(key_adult.staff_id, "changed after the demo started")
        again = ensure_synthetic_key_adults(accounts, [HOLLOWMERE, WRENFIELD], password=PASSWORD)
        assert len(again) == 4
        assert accounts.authenticate(key_adult.staff_id, "changed after the demo started") is not None
        assert len(json.loads(accounts.path.read_text())["accounts"]) == 4

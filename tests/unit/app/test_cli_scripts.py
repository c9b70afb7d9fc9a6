"""
Commands that work in scripts (issue 12, bullet 6): no terminal, no traceback, and advice on what to run.

Each test runs the real ``safebus`` command as a subprocess with standard
input closed (not a terminal), as a provisioning script or CI job would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safebus.consumers.audit.officers import Officers, default_officers_path
from safebus.consumers.inbox.key_adults import KeyAdults, default_key_adults_path
from tests.conftest import Partnership

PASSWORD = "provisioned-by-a-script-2026"


def _safebus(state: Path, *argv: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAFEBUS_NEW_PASSWORD"}
    env["SAFEBUS_HOME"] = str(state)
    return subprocess.run([sys.executable, "-m", "safebus", *argv], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60, check=False, pass_fds=pass_fds)


KEY_ADULT = ("key-adult", "add", "--school", "900101", "--staff-id", "900101-ka9", "--name", "Script Added",
             "--email", "ka9@school-900101.example")
OFFICER = ("audit", "officer", "add", "--id", "igo-9", "--role", "auditor", "--name", "Script Added")


@pytest.mark.parametrize("command", [KEY_ADULT, OFFICER], ids=["key-adult", "officer"])
def test_without_a_terminal_a_new_account_fails_cleanly_naming_the_options(tmp_path: Path,
                                                                            command: tuple[str, ...]) -> None:
    """No EOFError traceback: exit 2 and a message saying how to give the password."""
    done = _safebus(tmp_path, *command)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--password-fd" in done.stderr
    assert "--password-file" in done.stderr


def test_a_key_adult_password_from_a_file_descriptor(tmp_path: Path) -> None:
    """`--password-fd 3` reads the first line of an inherited descriptor; the account signs in with it."""
    read, write = os.pipe()
    os.write(write, f"{PASSWORD}\nignored second line\n".encode())
    os.close(write)
    try:
        done = _safebus(tmp_path, *KEY_ADULT, "--password-fd", str(read), pass_fds=(read,))
    finally:
        os.close(read)
    assert done.returncode == 0, done.stderr
    accounts = KeyAdults(default_key_adults_path(tmp_path))
    assert accounts.authenticate("900101-ka9", PASSWORD) is not None


def test_an_officer_password_from_a_file(tmp_path: Path) -> None:
    """`--password-file` reads its first line; the officer signs in with it."""
    secret = tmp_path / "secret.txt"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    done = _safebus(tmp_path, *OFFICER, "--password-file", str(secret))
    assert done.returncode == 0, done.stderr
    assert Officers(default_officers_path(tmp_path)).authenticate("igo-9", PASSWORD) is not None


def test_help_says_where_passwords_come_from(tmp_path: Path) -> None:
    """`--help` documents both sources."""
    for command in (("key-adult", "--help"), ("audit", "officer", "--help")):
        done = _safebus(tmp_path, *command)
        assert done.returncode == 0
        assert "--password-fd" in done.stdout
        assert "--password-file" in done.stdout


def test_gateway_run_without_credentials_says_to_add_one(partnership: Partnership) -> None:
    """A fresh partnership has no gateway credential: a clear message naming the command, no traceback."""
    done = _safebus(partnership.state_dir, "gateway", "run", "--bootstrap", "127.0.0.1:1", "--port", "0")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "safebus gateway credential add" in done.stderr


def test_rules_explain_of_a_missing_file_says_what_to_try(tmp_path: Path) -> None:
    """A typo in the payload's path is not a crash."""
    done = _safebus(tmp_path, "rules", "explain", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "schemas/examples/" in done.stderr

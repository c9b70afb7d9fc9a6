"""The optional settings file: what it sets, what the environment keeps, and what it refuses by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safebus.errors import ConfigError
from safebus.settings_file import SETTINGS_FILE, load_settings_file


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "safebus.env"
    path.write_text(text)
    return path


def test_the_files_settings_fill_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    path = _file(tmp_path, "# the partnership's machine\nSAFEBUS_TOPIC_PREFIX=northdale\n"
                           "SAFEBUS_SMTP=127.0.0.1:2525\nSAFEBUS_LOG_LEVEL=INFO\n")
    env = {SETTINGS_FILE: str(path), "SAFEBUS_LOG_LEVEL": "DEBUG"}
    assert load_settings_file(env) == path
    assert env["SAFEBUS_TOPIC_PREFIX"] == "northdale"
    assert env["SAFEBUS_SMTP"] == "127.0.0.1:2525"
    assert env["SAFEBUS_LOG_LEVEL"] == "DEBUG", "the environment wins: one command can change one setting"


def test_no_file_named_changes_nothing() -> None:
    env: dict[str, str] = {"SAFEBUS_HOME": "/srv/safebus"}
    assert load_settings_file(env) is None
    assert env == {"SAFEBUS_HOME": "/srv/safebus"}


@pytest.mark.parametrize(("text", "expected"), [
    ("SAFEBUS_SMPT=127.0.0.1:25\n", "SAFEBUS_SMPT is not a safebus setting"),
    ("SAFEBUS_KAFKA_PASSWORD=hunter2\n", "passwords go in their own files"),
    ("PATH=/tmp\n", "PATH is not a safebus setting"),
    ("SAFEBUS_SMTP\n", "SAFEBUS_SMTP has no value"),
])
def test_a_file_line_that_is_not_a_setting_is_refused_by_name_and_sets_nothing(
        tmp_path: Path, text: str, expected: str) -> None:
    path = _file(tmp_path, "SAFEBUS_TOPIC_PREFIX=northdale\n" + text)
    env = {SETTINGS_FILE: str(path)}
    with pytest.raises(ConfigError, match=expected) as refused:
        load_settings_file(env)
    assert str(path) in str(refused.value)
    assert env == {SETTINGS_FILE: str(path)}, "a refused file sets nothing at all"


def test_a_missing_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{SETTINGS_FILE}: no file at"):
        load_settings_file({SETTINGS_FILE: str(tmp_path / "absent.env")})


def _safebus(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command line as an operator runs it (its own process: its logging and environment are its own)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEBUS_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "safebus", *argv], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_every_command_refuses_a_bad_settings_file_before_it_starts(tmp_path: Path) -> None:
    path = _file(tmp_path, "SAFEBUS_SMPT=127.0.0.1:25\n")
    result = _safebus("--state-dir", str(tmp_path), "config", "check", env={SETTINGS_FILE: str(path)})
    assert result.returncode == 2
    assert "configuration refused" in result.stderr
    assert f"{path}: SAFEBUS_SMPT is not a safebus setting" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_shows_what_the_file_set(tmp_path: Path) -> None:
    path = _file(tmp_path, "SAFEBUS_TOPIC_PREFIX=northdale\nSAFEBUS_SMTP=127.0.0.1:2525\n")
    result = _safebus("--state-dir", str(tmp_path), "config", "check", env={SETTINGS_FILE: str(path)})
    assert result.returncode == 0, result.stderr
    shown = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert shown["settings_file"] == str(path)
    assert shown["topic_prefix"] == "northdale"
    assert shown["smtp.relay"] == "127.0.0.1:2525"

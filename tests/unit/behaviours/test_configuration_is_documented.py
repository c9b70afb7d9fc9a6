"""README's configuration table names exactly the environment variables the package reads.

An operator configures safebus from that table; a variable the code reads but the table omits is a
setting nobody can find, and a row for a variable nothing reads is a setting that silently does
nothing. The variables are found as the string constants in the package's source (``ast``, so a
name built in a dict, as the gateway's limits are, counts too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from safebus.settings_file import KNOWN_SETTINGS, SETTINGS_FILE
from tests.architecture.layering import discover, package_dirs

README = Path(__file__).resolve().parents[3] / "README.md"
_NAME = re.compile(r"SAFEBUS_[A-Z][A-Z0-9_]*[A-Z0-9]")


_NOT_IN_A_FILE = {SETTINGS_FILE, "SAFEBUS_DEMO_PASSWORD", "SAFEBUS_NEW_PASSWORD"}


def _read_by_the_package() -> set[str]:
    """The variables named in the package's code (the settings file's own list aside: it is checked below)."""
    found = {SETTINGS_FILE}
    for module, path in discover(package_dirs()).items():
        if module == "safebus.settings_file":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.fullmatch(node.value):
                found.add(node.value)
    return found


def _documented() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `SAFEBUS_")]
    return {name for row in rows for name in _NAME.findall(row.split("|")[1])}


def test_every_variable_the_package_reads_has_a_row_and_every_row_is_read() -> None:
    """The table and the code name the same variables."""
    read, documented = _read_by_the_package(), _documented()
    assert read - documented == set(), "read by the package but not in README's configuration table"
    assert documented - read == set(), "in README's configuration table but read nowhere"


def test_the_check_sees_the_variables_it_must() -> None:
    """Sanity: the scan finds variables read in several ways (a plain get, the gateway's table)."""
    read = _read_by_the_package()
    assert {"SAFEBUS_HOME", "SAFEBUS_SMTP_SECURITY", "SAFEBUS_GATEWAY_RATE_PER_S"} <= read


def test_the_settings_file_accepts_exactly_the_settings_the_package_reads() -> None:
    """A file may set what the environment may (no more, so a misspelt name is refused, not ignored)."""
    assert (_read_by_the_package() - _NOT_IN_A_FILE) | {"KAFKA_BOOTSTRAP_SERVERS"} == KNOWN_SETTINGS

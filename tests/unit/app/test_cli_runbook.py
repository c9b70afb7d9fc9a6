"""
The operations runbook's commands are the real command line: a renamed command or option fails here.

docs/operations.md is read at 3 a.m. by someone who will type what it says, so
every ``safebus ...`` line in its shell blocks is parsed by the CLI's own parser.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from safebus.app.cli import _parser

RUNBOOK = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def runbook_commands(text: str) -> list[list[str]]:
    """The argument lists of every ``safebus`` line inside a ```sh block of `text`."""
    commands: list[list[str]] = []
    in_shell = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_shell = stripped == "```sh"
            continue
        if in_shell and stripped.startswith("safebus "):
            commands.append(shlex.split(stripped)[1:])
    return commands


COMMANDS = runbook_commands(RUNBOOK.read_text(encoding="utf-8"))
"""The runbook's commands, read once for every test below."""


def test_the_runbook_shows_the_commands_of_every_section() -> None:
    """It is a runbook, not an essay: first start, onboarding, rotation, backup and upgrade are all commands."""
    commands = {argv[0] for argv in COMMANDS}
    assert {"broker", "config", "topics", "acls", "up", "agency", "key-adult", "gateway", "audit"} <= commands


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_runbook_command_is_accepted_by_the_cli(argv: list[str]) -> None:
    """argparse exits with status 2 on an unknown command or option; the runbook's lines must all parse."""
    _parser().parse_args(argv)


def test_a_misspelt_command_would_be_caught() -> None:
    """The check above can fail: an option the CLI does not have is refused."""
    with pytest.raises(SystemExit):
        _parser().parse_args(["acls", "apply", "--dry-runn"])

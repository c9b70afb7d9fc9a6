"""
Where a new account's password comes from, so that no command needs a terminal.

An administrator adding Key Adults or officers from a provisioning script has
no terminal for ``getpass``; a password on the command line would sit in the
shell history and the process list.  So, in order:

1. ``--password-fd N``: the first line read from an open file descriptor
   (``--password-fd 3 3< secret.txt``, or a pipe from a secrets manager);
2. ``--password-file PATH``: the first line of a file (keep it 0600);
3. ``SAFEBUS_NEW_PASSWORD``: the environment (for the demo and tests);
4. a terminal, if standard input is one: asked for twice, without echo.

With none of these the command fails at once with a message naming them,
never with a traceback from ``getpass`` reading a closed standard input.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from safebus.errors import ConfigError

__all__ = ["CREDENTIAL_SOURCES_HELP", "add_password_arguments", "new_password"]

_MAX_READ = 4096
CREDENTIAL_SOURCES_HELP = (
    "The new password is read from --password-fd N or --password-file PATH (first line), else from "
    "SAFEBUS_NEW_PASSWORD, else asked for on the terminal; it is never an argument.")


def add_password_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--password-fd`` and ``--password-file`` to a command that sets a password."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-fd", type=int, metavar="N",
                        help="read the new password's first line from open file descriptor N (e.g. 3 3< secret)")
    source.add_argument("--password-file", type=Path, metavar="PATH",
                        help="read the new password from the first line of PATH (keep it readable by you only)")


def _first_line(data: bytes, what: str) -> str:
    line = data.decode("utf-8", errors="strict").splitlines()[0] if data.strip() else ""
    if not line:
        raise ConfigError(f"no password in {what}: it must hold the password on its first line")
    return line


def new_password(args: argparse.Namespace, *, what: str) -> str:
    """The new password for the account the command is about (`what`: "key adult", "officer")."""
    fd: int | None = getattr(args, "password_fd", None)
    file: Path | None = getattr(args, "password_file", None)
    if fd is not None:
        try:
            with os.fdopen(fd, "rb", closefd=True) as stream:
                return _first_line(stream.read(_MAX_READ), f"file descriptor {fd}")
        except OSError as exc:
            raise ConfigError(f"cannot read the password from file descriptor {fd} ({exc.strerror}): open it "
                              f"for the command, e.g. 'safebus … --password-fd 3 3< secret.txt'") from exc
    if file is not None:
        try:
            return _first_line(file.read_bytes()[:_MAX_READ], str(file))
        except OSError as exc:
            raise ConfigError(f"cannot read the password file {file} ({exc.strerror})") from exc
    from_env = os.environ.get("SAFEBUS_NEW_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfigError(f"no terminal to ask for the {what}'s new password: give it with --password-fd N or "
                          "--password-file PATH (or set SAFEBUS_NEW_PASSWORD)")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ: nothing was changed")
    return first

"""
A throwaway PostgreSQL cluster for tests: created in a temporary folder, started on a free port, deleted afterwards.

Any test that needs the real engine (the audit projection, the consumers'
stores, ``safebus db upgrade``, two web instances on one store) uses this one
harness, through `running_server` or a module-scoped fixture built on it
(``postgresql = postgresql_fixture()`` in the test module).  No shared
server, no credentials (``trust`` on 127.0.0.1 only).  Its collation is ICU
``en-GB``, what a UK partnership's server is likely to use, so any reliance
on byte order for text would show.  PostgreSQL refuses to run as root, so on
CI (which runs tests as root) the server runs as the ``postgres`` user the
Debian package creates.  Missing binaries are a failure, not a skip: ``make
tools`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = ["Server", "postgresql_fixture", "running_server"]

_DEBIAN_BINARIES = Path("/usr/lib/postgresql")
_SERVER_USER = "postgres"
"""The OS user the server runs as when the tests run as root (created by Debian's postgresql package)."""

_TIMEOUT = 60
"""Seconds any one server command may take: a hung start fails the test instead of the whole run."""


@dataclass(frozen=True)
class Server:
    """A running throwaway PostgreSQL cluster on 127.0.0.1."""

    port: int

    def url(self, database: str = "postgres") -> str:
        """The configuration URL of `database` (user ``safebus``, no password: the cluster trusts 127.0.0.1)."""
        return f"postgresql://safebus@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "test") -> str:
        """Create an empty database and return its URL: each scenario starts from nothing, as SQLite's fresh file."""
        name = f"{prefix}_{uuid.uuid4().hex}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def _binaries() -> Path:
    """
    The folder holding ``initdb`` and ``pg_ctl``: Debian's newest version, else whatever is on PATH.

    Fails (never skips) when there is none, saying how to get them.
    """
    debian = [p.parent for p in _DEBIAN_BINARIES.glob("*/bin/initdb")]
    if debian:
        return max(debian, key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).parent
    pytest.fail("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH: "
                "run `make tools`, which installs Debian's postgresql package")


def _as_server_user(command: Sequence[str]) -> list[str]:
    """`command` run as the server's user: ``postgres`` when we are root (PostgreSQL refuses root), else us."""
    return ["runuser", "-u", _SERVER_USER, "--", *command] if os.geteuid() == 0 else list(command)


def _run(command: Sequence[str], *, cwd: Path, log: Path | None = None) -> None:
    """Run a server command in `cwd` (the server user may not be able to enter ours); fail with its output."""
    done = subprocess.run(_as_server_user(command), cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT,
                          check=False)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace") if log is not None and log.exists() else ""
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server_log}")


def _free_port() -> int:
    """A TCP port nothing listens on right now (the start is retried if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """
    A throwaway cluster in a temporary folder, owned by the server user, started on a free port.

    ``-A trust`` and ``listen_addresses=127.0.0.1`` keep it credential-free
    and unreachable from elsewhere; ``--no-sync`` and ``fsync=off`` keep it
    fast, since its data is thrown away.  Stopped with ``-m immediate`` and
    deleted at the end.
    """
    binaries = _binaries()
    # Not tmp_path_factory: pytest's folders are 0700 and owned by us, so the server user could not enter them.
    base = Path(tempfile.mkdtemp(prefix="safebus-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            shutil.rmtree(base)
            pytest.fail(f"running as root, PostgreSQL must run as the {_SERVER_USER!r} user, which does not exist: "
                        "run `make tools`, which installs Debian's postgresql package (it creates the user)")
        os.chown(base, user.pw_uid, user.pw_gid)
    data, log = base / "data", base / "server.log"
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "safebus", "--no-sync",
              "-E", "UTF8", "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-GB"], cwd=base)
        for _attempt in range(3):  # a port can be taken between probing and starting: try another
            port = _free_port()
            options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
            start = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
            if subprocess.run(_as_server_user(start), cwd=base, capture_output=True, timeout=_TIMEOUT,
                              check=False).returncode == 0:
                break
        else:
            pytest.fail(f"PostgreSQL did not start (three ports tried):\n{log.read_text(errors='replace')}")
        yield Server(port=port)
    finally:
        if (data / "postmaster.pid").exists():  # also after a start that timed out but left a server running
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], cwd=base, log=log)
        shutil.rmtree(base, ignore_errors=True)


def postgresql_fixture() -> Callable[[], Iterator[Server]]:
    """A module-scoped ``postgresql`` fixture: one server per test module, for `running_server`'s lifetime."""
    @pytest.fixture(scope="module", name="postgresql")
    def postgresql() -> Iterator[Server]:
        with running_server() as server:
            yield server

    return postgresql

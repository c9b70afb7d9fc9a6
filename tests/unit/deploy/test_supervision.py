"""supervisord's configuration as supervisord itself reads it back, and the supervisor's lifecycle when nothing runs.

The generated file is parsed with supervisord's own option parser (`ServerOptions`), so what is
asserted is what supervisord would run: every worker of the table a program, its control socket a
unix socket in the state directory, the partnership's settings in each worker's environment, and
nothing of the caller's secrets in the file.
"""

from __future__ import annotations

import configparser
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from safebus.deploy.acls import COMPONENTS
from safebus.deploy.supervision import (
    DEFAULT_HEALTH_PORT_BASE,
    SOCKET_PATH_MAX,
    WORKERS,
    SupervisionPaths,
    Supervisor,
    Worker,
    health_port_base,
    health_ports,
    supervisord_conf,
)
from safebus.errors import ConfigError, SupervisionError

_BOOTSTRAP = "127.0.0.1:19092"


def _conf(state: Path, **overrides: Any) -> str:
    arguments: dict[str, Any] = {"state_dir": state, "bootstrap": _BOOTSTRAP, "prefix": "tprefix",
                                 "log_level": "INFO", **overrides}
    return supervisord_conf(**arguments)


def _as_supervisord_reads_it(state: Path, text: str) -> Any:
    """supervisord's own parse of `text` (it checks that the directories named exist, as at a real start)."""
    SupervisionPaths(state).root.mkdir(parents=True, exist_ok=True)
    SupervisionPaths(state).logs.mkdir(parents=True, exist_ok=True)
    path = state / "supervisord.conf"
    path.write_text(text)
    options = ServerOptions()
    options.realize(args=["-c", str(path)])
    return options


def _programs(options: Any) -> dict[str, Any]:
    return {config.name: config for group in options.process_group_configs for config in group.process_configs}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory whose path has a space and a comma, as an operator's may."""
    path = tmp_path / "north dale,state"
    path.mkdir()
    return path


class TestPrograms:
    """Every worker of the table is one supervised program that runs the right command."""

    def test_every_worker_in_the_table_is_a_program_running_its_command(self, state: Path) -> None:
        """Names, commands (``python -m safebus <argv> --bootstrap``) and directories, as supervisord parses them."""
        programs = _programs(_as_supervisord_reads_it(state, _conf(state)))
        assert sorted(programs) == sorted(w.name for w in WORKERS)
        for worker in WORKERS:
            program = programs[worker.name]
            assert shlex.split(program.command) == [sys.executable, "-m", "safebus", *worker.argv,
                                                    "--bootstrap", _BOOTSTRAP]
            assert program.directory == str(state)
            assert program.stdout_logfile == str(state / "logs" / f"{worker.name}.log")
            assert program.redirect_stderr is True

    def test_only_the_workers_asked_for(self, state: Path) -> None:
        """A partnership without a gateway credential runs the others only."""
        chosen = [w for w in WORKERS if w.name != "gateway"]
        programs = _programs(_as_supervisord_reads_it(state, _conf(state, workers=chosen)))
        assert sorted(programs) == sorted(w.name for w in chosen)

    def test_names_are_unique_and_cover_every_long_running_command(self) -> None:
        """One row per worker, and the six long-running commands each have one."""
        assert len({w.name for w in WORKERS}) == len(WORKERS)
        assert {w.argv for w in WORKERS} == {("processor", "run"), ("inbox", "run"), ("queue", "run"),
                                            ("audit", "sequence"), ("encompass", "monitor"), ("gateway", "run")}

    def test_environment_carries_the_partnership_settings(self, state: Path) -> None:
        """SAFEBUS_HOME, the topic prefix and the log level reach every worker, whatever the caller's shell."""
        for program in _programs(_as_supervisord_reads_it(state, _conf(state))).values():
            assert program.environment == {"SAFEBUS_HOME": str(state), "SAFEBUS_TOPIC_PREFIX": "tprefix",
                                           "SAFEBUS_LOG_LEVEL": "INFO"}

    def test_each_worker_runs_as_its_own_principal_when_identities_are_given(self, state: Path) -> None:
        """The router is User:router and the inbox User:inbox: one worker's identity never reaches another."""
        identities = {w.name: {"SAFEBUS_KAFKA_USERNAME": w.principal,
                               "SAFEBUS_KAFKA_PASSWORD_FILE": f"/creds/{w.principal}.password"} for w in WORKERS}
        programs = _programs(_as_supervisord_reads_it(state, _conf(state, identities=identities)))
        for worker in WORKERS:
            environment = programs[worker.name].environment
            assert environment["SAFEBUS_KAFKA_USERNAME"] == worker.principal
            assert environment["SAFEBUS_KAFKA_PASSWORD_FILE"] == f"/creds/{worker.principal}.password"
        assert programs["processor"].environment["SAFEBUS_KAFKA_USERNAME"] == "router"

    def test_every_workers_principal_is_a_component_the_acls_grant(self) -> None:
        """A supervised worker whose principal had no ACLs would be refused everything on a secured cluster."""
        assert {w.principal for w in WORKERS} <= {c.principal for c in COMPONENTS}

    def test_restart_and_stop_policy(self, state: Path) -> None:
        """Always restarted, backed off when a start fails, and SIGTERM gets longer than the workers' 7 s watchdog."""
        options = _as_supervisord_reads_it(state, _conf(state))
        for program in _programs(options).values():
            assert program.autorestart is RestartUnconditionally  # autorestart = true
            assert program.startretries >= 3
            assert program.startsecs >= 5
            assert program.stopwaitsecs > 7
            assert program.killasgroup is True
        assert options.umask == 0o077  # inboxes and keys the workers write stay the owner's


class TestHealthPorts:
    """Each supervised worker gets a ``--health-port`` of its own, the same on every start, from one setting."""

    def test_each_worker_gets_its_own_port_counted_from_the_base(self, state: Path) -> None:
        programs = _programs(_as_supervisord_reads_it(state, _conf(state, health_port_base=9500)))
        ports = {}
        for worker in WORKERS:
            argv = shlex.split(programs[worker.name].command)
            assert argv[:3 + len(worker.argv)] == [sys.executable, "-m", "safebus", *worker.argv]
            assert argv[-2:] == ["--bootstrap", _BOOTSTRAP]
            ports[worker.name] = int(argv[argv.index("--health-port") + 1])
        assert ports == {"processor": 9500, "inbox": 9501, "queues": 9502, "sequencer": 9503, "monitor": 9504,
                         "gateway": 9505}
        assert health_ports(9500) == ports

    def test_a_worker_left_out_keeps_the_others_ports(self, state: Path) -> None:
        """Without the gateway (no credential yet) the others' ports do not move: scrape targets stay put."""
        chosen = [w for w in WORKERS if w.name != "inbox"]
        assert health_ports(9180, chosen) == {name: port for name, port in health_ports(9180).items()
                                              if name != "inbox"}

    def test_without_a_base_no_worker_is_given_a_port(self, state: Path) -> None:
        assert "--health-port" not in _conf(state)
        assert health_ports(None) == {}

    @pytest.mark.parametrize(("value", "base"), [("", DEFAULT_HEALTH_PORT_BASE), (" 9400 ", 9400), ("off", None),
                                                 ("OFF", None)])
    def test_the_setting(self, value: str, base: int | None) -> None:
        assert health_port_base({"SAFEBUS_HEALTH_PORT_BASE": value}) == base
        assert health_port_base({}) == DEFAULT_HEALTH_PORT_BASE

    @pytest.mark.parametrize("value", ["abc", "-1", "80", "1023", "65531", "9180.5"])
    def test_a_value_that_is_no_usable_base_is_refused_naming_the_variable(self, value: str) -> None:
        with pytest.raises(ConfigError, match="SAFEBUS_HEALTH_PORT_BASE must be a port from 1024 to 65530"):
            health_port_base({"SAFEBUS_HEALTH_PORT_BASE": value})


class TestControl:
    """Only the owner can reach supervisord, and only through the state directory."""

    def test_the_only_server_is_a_unix_socket_in_the_state_directory(self, state: Path) -> None:
        """One server, AF_UNIX, inside ``<state>/supervisor``, mode 0700; no TCP listener of any kind."""
        text = _conf(state)
        [server] = _as_supervisord_reads_it(state, text).server_configs
        assert server["family"] == socket.AF_UNIX
        assert server["file"] == str(SupervisionPaths(state).socket)
        assert Path(server["file"]).parent == state / "supervisor"
        assert server["chmod"] == 0o700
        sections = configparser.ConfigParser(interpolation=None)
        sections.read_string(text)
        assert "inet_http_server" not in sections
        assert sections["supervisorctl"]["serverurl"] == f"unix://{SupervisionPaths(state).socket}"

    def test_a_socket_path_too_long_for_unix_is_refused(self, tmp_path: Path) -> None:
        """Better a clear error at ``up`` than supervisord failing to bind."""
        deep = tmp_path / ("d" * (SOCKET_PATH_MAX - len(str(tmp_path))))
        with pytest.raises(SupervisionError, match="too long"):
            _conf(deep)


class TestNoSecrets:
    """The file holds the table and paths only: nothing of the environment it was generated in."""

    def test_the_callers_secrets_stay_out_of_the_file(self, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Secrets in the shell that runs ``up`` reach workers through supervisord's environment, never the file."""
        monkeypatch.setenv("SAFEBUS_SMTP_PASSWORD_FILE", "/run/secrets/smtp-password-5f1e")
        monkeypatch.setenv("SAFEBUS_NEW_PASSWORD", "not-in-the-file-8c2d")
        text = _conf(state)
        assert "5f1e" not in text
        assert "8c2d" not in text
        sections = configparser.ConfigParser(interpolation=None)
        sections.read_string(text)
        keys = {key for section in sections.values() for key in section}
        assert not {key for key in keys if "password" in key or "username" in key}
        [server] = _as_supervisord_reads_it(state, text).server_configs
        assert (server["username"], server["password"]) == (None, None)

    @pytest.mark.parametrize("bad", ["st%(here)s", "line\nbreak"])
    def test_a_value_supervisord_would_rewrite_is_refused(self, tmp_path: Path, bad: str) -> None:
        """``%`` (supervisord's expansion) and line breaks would change what runs; refused, not escaped."""
        with pytest.raises(SupervisionError):
            _conf(tmp_path / bad)

    def test_a_quote_in_an_environment_value_is_refused(self, state: Path) -> None:
        """A quote would end supervisord's quoted value early and change the environment."""
        with pytest.raises(SupervisionError, match="quote"):
            _conf(state, prefix='t"x')


def test_status_and_down_when_nothing_runs(tmp_path: Path) -> None:
    """Status and down are safe before ``up`` (and after a supervisord that left only its socket file)."""
    supervisor = Supervisor(state_dir=tmp_path)
    assert supervisor.status().running is False
    assert supervisor.down().running is False
    supervisor.paths.root.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(supervisor.paths.socket))  # bound, never listening: a stale socket
    stale.close()
    assert supervisor.status().running is False
    assert supervisor.status().describe() == ["supervisord: stopped"]


def test_a_worker_that_cannot_start_is_backed_off_then_given_up(tmp_path: Path) -> None:
    """A real supervisord: a command that fails at once is retried `startretries` times, then FATAL; down stops all."""
    broken = Worker(name="broken", principal="router", argv=("no-such-command",), why="exits 2 at once (argparse)",
                    startsecs=2, startretries=2)
    supervisor = Supervisor(state_dir=tmp_path)
    try:
        status = supervisor.up(bootstrap=_BOOTSTRAP, prefix="tprefix", log_level="INFO", workers=[broken],
                               timeout_s=45)
        assert status.running
        assert [(w.name, w.state) for w in status.workers] == [("broken", "FATAL")]
        assert not status.all_running
        log = supervisor.log_tail(100)
        assert log.count("spawned: 'broken'") == 3  # the first start and two retries
        assert "gave up: broken entered FATAL state, too many start retries too quickly" in log
        assert (tmp_path / "logs" / "broken.log").read_text().count("invalid choice") == 3
        assert supervisor.paths.socket.stat().st_mode & 0o777 == 0o700
        assert supervisor.paths.log.stat().st_mode & 0o077 == 0
        assert supervisor.up(bootstrap=_BOOTSTRAP, prefix="tprefix", log_level="INFO",
                             workers=[broken]).already_running
    finally:
        assert supervisor.down().running is False
    assert supervisor.status().running is False

"""Which workers ``safebus up`` supervises for a partnership, and what it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus.app.cli import _parser
from safebus.app.cli_supervision import up, workers_for
from safebus.app.wiring import Settings
from safebus.deploy.supervision import WORKERS
from safebus.errors import ConfigError
from safebus.topics import TopicNames
from tests.conftest import Partnership


def _settings(state: Path) -> Settings:
    return Settings(state_dir=state, bootstrap="127.0.0.1:19092", names=TopicNames(prefix="tprefix"))


def test_the_gateway_joins_once_it_has_a_credential(tmp_path: Path) -> None:
    """Without a credential the gateway would only fail to start (and go FATAL); with one it is supervised too."""
    assert [w.name for w in workers_for(_settings(tmp_path))] == [w.name for w in WORKERS if w.name != "gateway"]
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "credentials.json").write_text("{}")
    assert workers_for(_settings(tmp_path)) == WORKERS


def test_up_without_a_partnership_starts_nothing(tmp_path: Path) -> None:
    """No directory and keys: a clear error, and no supervisord left behind."""
    with pytest.raises(ConfigError, match="partnership init"):
        up(_settings(tmp_path), log_level="INFO")
    assert not (tmp_path / "supervisor").exists()


def test_every_worker_given_a_health_port_accepts_the_option() -> None:
    """The ports ``up`` hands out would only make workers exit 2 if a command did not take ``--health-port``."""
    ported = [w for w in WORKERS if w.health_offset is not None]
    assert [w.name for w in ported] == [w.name for w in WORKERS], "every supervised worker serves its health"
    for worker in ported:
        args = _parser().parse_args([*worker.argv, "--health-port", "9180", "--bootstrap", "127.0.0.1:19092"])
        assert args.health_port == 9180


def test_a_bad_health_port_base_is_refused_before_anything_starts(partnership: Partnership,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong SAFEBUS_HEALTH_PORT_BASE is named, and no supervisord is left behind."""
    monkeypatch.setenv("SAFEBUS_HEALTH_PORT_BASE", "80")
    with pytest.raises(ConfigError, match="SAFEBUS_HEALTH_PORT_BASE must be a port from 1024"):
        up(_settings(partnership.state_dir), log_level="INFO")
    assert not (partnership.state_dir / "supervisor").exists()

"""Which workers ``safebus up`` supervises for a partnership, and what it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus.app.cli_supervision import up, workers_for
from safebus.app.wiring import Settings
from safebus.deploy.supervision import WORKERS
from safebus.errors import ConfigError
from safebus.topics import TopicNames


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

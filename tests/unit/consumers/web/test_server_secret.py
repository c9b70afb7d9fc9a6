"""The web apps' server secret: made once, owner-only, and refused when anyone else could read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from safebus.consumers.web.server_secret import MIN_SECRET_BYTES, load_or_create_secret
from safebus.errors import ConfigError


def test_the_secret_is_made_once_owner_only_and_kept_across_restarts(tmp_path: Path) -> None:
    """Sessions survive a restart because the second start reads the first's secret; nothing else is left beside it."""
    path = tmp_path / "web" / "secret"
    first = load_or_create_secret(path)
    assert len(first) == MIN_SECRET_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_a_secret_open_to_others_is_refused_not_used(tmp_path: Path) -> None:
    """Anyone who can read it can forge sessions: the app will not start on it."""
    path = tmp_path / "secret"
    path.write_bytes(bytes(MIN_SECRET_BYTES))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="open to other users"):
        load_or_create_secret(path)


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    """An empty or truncated file is an error naming the length, not a weak key."""
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"shorter than {MIN_SECRET_BYTES} bytes"):
        load_or_create_secret(path)

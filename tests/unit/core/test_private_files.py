"""Secrets land on disk whole and owner-only, whatever was at the name before (safebus.private_files)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from safebus.directory import PartnershipStore
from safebus.keys import PrivateKeys
from safebus.private_files import create_private, write_private
from safebus.pseudonyms import Tokeniser


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_replaces_a_world_readable_file_with_an_owner_only_one(tmp_path: Path) -> None:
    """The bug it removes: O_TRUNC on an existing 0644 file kept 0644."""
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary left beside it


def test_write_private_makes_missing_folders_and_honours_no_umask(tmp_path: Path) -> None:
    """A fresh file is 0600 exactly, in a folder created for it."""
    path = tmp_path / "a" / "b" / "secret"
    write_private(path, b"x")
    assert _mode(path) == 0o600


def test_create_private_creates_once_and_narrows_what_is_there(tmp_path: Path) -> None:
    """A second creator keeps the first's bytes (no split key), and a loose mode is taken in to 0600."""
    path = tmp_path / "key"
    assert create_private(path, b"first") is True
    assert _mode(path) == 0o600
    path.chmod(0o640)
    assert create_private(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_create_private_writes_nothing_beside_a_key_that_is_there(tmp_path: Path) -> None:
    """A key in a read-only folder (a mounted secret) still loads: nothing is written next to it."""
    path = tmp_path / "key"
    create_private(path, b"k")
    tmp_path.chmod(0o500)
    try:
        assert create_private(path, b"other") is False
    finally:
        tmp_path.chmod(0o700)
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


@pytest.mark.parametrize("old_mode", [0o644, 0o600])
def test_private_keys_save_is_owner_only_even_over_a_loose_file(tmp_path: Path, old_mode: int) -> None:
    """Re-saving keys over a file an older release left readable leaves it 0600, with the same content format."""
    path = tmp_path / "keys.json"
    path.write_text("{}")
    path.chmod(old_mode)
    keys = PrivateKeys.generate("northdale-police")
    keys.save(path)
    assert _mode(path) == 0o600
    assert json.loads(path.read_text())["agency_id"] == "northdale-police"
    assert PrivateKeys.load(path).public() == keys.public()


def test_pseudonym_key_is_created_once_and_narrowed(tmp_path: Path) -> None:
    """The tokeniser's key survives a second load unchanged, and a loosened key file is narrowed on load."""
    path = tmp_path / "pseudonyms.key"
    first = Tokeniser.load_or_create(path)
    path.chmod(0o644)
    again = Tokeniser.load_or_create(path)
    assert again.key == first.key
    assert _mode(path) == 0o600


def test_audit_log_key_is_created_once_and_narrowed(tmp_path: Path) -> None:
    """The audit log's signing key: one key however often it is loaded, and owner-only after a load."""
    from safebus.consumers.audit.ledger import LogKey

    path = tmp_path / "log-key.pem"
    first = LogKey.load_or_create(path, origin="audit.example")
    path.chmod(0o644)
    again = LogKey.load_or_create(path, origin="audit.example")
    assert again.private_key.private_bytes_raw() == first.private_key.private_bytes_raw()
    assert _mode(path) == 0o600


def test_partnership_root_key_is_owner_only_even_over_a_loose_file(tmp_path: Path) -> None:
    """Re-creating the root key where a 0644 file was leaves a 0600 file holding the new key."""
    store = PartnershipStore(tmp_path)
    path = tmp_path / "keys" / "partnership-root.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    root = store.create_root()
    assert _mode(path) == 0o600
    assert store.root_key().public_key() == root.public_key()

"""
Owner-only files written whole: the one way safebus puts a secret (a private key, a pseudonym key) on disk.

Two mistakes recur when each module writes its own secrets. ``os.open(path, O_CREAT | O_TRUNC, 0o600)``
applies the mode only when it *creates* the file, so rewriting a file that an operator (or an older
release) left at 0644 keeps it world-readable; and writing in place lets a crash, or a reader racing the
writer, see half a key. Here the bytes go to a fresh 0600 file beside the target, are flushed to disk,
and are then renamed over it: the name always holds a whole file, and the file it holds is always 0600,
whatever mode the one it replaced had.

`write_private` replaces; `create_private` is the create-once variant for keys generated on first use:
two processes starting together must not each write a different key (a pseudonym key that changed
under one of them would split every subject's token), so it links the finished file into place only
if the name is still free, and narrows a file already there to 0600 rather than rewriting it.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

__all__ = ["PRIVATE_MODE", "create_private", "write_private"]

PRIVATE_MODE = 0o600
"""Readable and writable by the owner only."""


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a 0600 file holding `data` (an existing file's looser mode goes with it)."""
    temporary = _finished_temporary(path, data)
    try:
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)


def create_private(path: Path, data: bytes) -> bool:
    """
    Create `path` as a 0600 file holding `data` if nothing is there, and say so.

    If something is (another process won the race, or an earlier run made it), its content is left
    as it is and False returned; but a file open to group or others is narrowed to 0600, so a key an
    older release or a careless copy left readable stops being readable the next time it is used.
    """
    if path.exists():  # nothing is written beside a key that is there (its folder may be read-only)
        _narrow(path)
        return False
    temporary = _finished_temporary(path, data)
    try:
        os.link(temporary, path)
    except FileExistsError:  # created between the check and the link: the winner's file stands
        _narrow(path)
        return False
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return True


def _narrow(path: Path) -> None:
    """Take group and other access off `path`, if it has any."""
    if stat.S_IMODE(path.stat().st_mode) & ~PRIVATE_MODE:
        path.chmod(PRIVATE_MODE)


def _finished_temporary(path: Path, data: bytes) -> Path:
    """A new 0600 file beside `path` holding `data`, flushed to disk (the caller renames or removes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_MODE)  # the umask may only narrow the mode; say it exactly anyway
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_directory(folder: Path) -> None:
    """Flush the folder's entry for the renamed file, so the new name survives a power cut too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""
Server-side web sessions: a random id in the cookie, the session itself in SQLite, ended the moment it is revoked.

A signed, self-contained cookie cannot be taken back: after sign-out a copy
of it (a shared computer, a proxy log, a stolen laptop) kept working until it
expired, eight hours later.  Here the cookie holds only 256 random bits; the
row it names says whose session it is, bound to which credential version,
until when.  Ending a session deletes the row, so the very next request with
the old cookie is signed out:

- sign-out ends that session (`end`);
- a password reset or a removed account ends every session of that user
  (`end_all_for`), called by the account commands (``safebus key-adult
  reset-password|remove``, ``safebus audit officer reset-password|remove``)
  on the same file the running web app reads, so it works across processes.

Only the SHA-256 of each id is stored: a copy of the database does not hold
a working cookie.  Expired rows are deleted as new sessions are made.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from safebus.clock import utc_now
from safebus.logs import get_logger

__all__ = ["Session", "SessionStore", "end_sessions_of", "sessions_path"]

_log = get_logger("consumers.web_sessions")

_MAX_ID_CHARS = 64
"""A session id is 43 characters; anything much longer is not one of ours and is not even hashed."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    version TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
"""


@dataclass(frozen=True, kw_only=True)
class Session:
    """A live session: whose, bound to which credential version, and its handle (the hash of the cookie's id)."""

    handle: str
    user_id: str
    version: str
    expires: datetime


def sessions_path(app_dir: Path) -> Path:
    """Where a web app whose state lives in `app_dir` keeps its sessions."""
    return app_dir / "web-sessions.sqlite"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """
    The sessions of one web app, at `path` (``None``: in memory, for tests).

    Thread-safe (one connection under a lock); several processes may share
    the file.  `clock` gives the time, so tests control expiry.
    """

    def __init__(self, path: Path | None, *, clock: Callable[[], datetime]) -> None:
        """Open (creating, mode 0700 directory) the session database at `path`."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(":memory:" if path is None else path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def start(self, *, user_id: str, version: str, ttl: timedelta) -> tuple[str, Session]:
        """A new session for `user_id` lasting `ttl`: the id to put in the cookie, and the session."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(handle=_digest(session_id), user_id=user_id, version=version, expires=now + ttl)
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now.timestamp(),))
            self._db.execute("INSERT INTO sessions (id_hash, user_id, version, expires) VALUES (?, ?, ?, ?)",
                             (session.handle, user_id, version, session.expires.timestamp()))
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        """The live session `session_id` names, or None (unknown, ended or expired: all the same)."""
        if not session_id or len(session_id) > _MAX_ID_CHARS:
            return None
        handle = _digest(session_id)
        with self._lock:
            row = self._db.execute("SELECT user_id, version, expires FROM sessions WHERE id_hash = ?",
                                   (handle,)).fetchone()
        if row is None or row[2] <= self._clock().timestamp():
            return None
        return Session(handle=handle, user_id=row[0], version=row[1],
                       expires=datetime.fromtimestamp(row[2], tz=self._clock().tzinfo))

    def end(self, session: Session) -> None:
        """End one session (sign-out)."""
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (session.handle,))

    def end_all_for(self, user_id: str) -> int:
        """End every session of `user_id` (password reset, account removed); return how many there were."""
        with self._lock:
            ended = self._db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
        _log.info("web.sessions_ended", user_id=user_id, sessions=ended)
        return ended

    def count_for(self, user_id: str) -> int:
        """How many live sessions `user_id` has."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND expires > ?",
                                   (user_id, self._clock().timestamp())).fetchone()
        return int(row[0])


def end_sessions_of(app_dir: Path, user_id: str) -> int:
    """End every session of `user_id` in the web app whose state lives in `app_dir` (the account commands)."""
    path = sessions_path(app_dir)
    if not path.exists():
        return 0
    store = SessionStore(path, clock=utc_now)
    try:
        return store.end_all_for(user_id)
    finally:
        store.close()

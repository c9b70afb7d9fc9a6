"""
Server-side web sessions: a random id in the cookie, the session itself in a database, ended the moment it is revoked.

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

The sessions live in a SQLite file in the web app's state folder, or, when
``SAFEBUS_DATABASE_URL`` names a shared database, there (`open_sessions`):
then several instances of one web app behind one address honour each
other's sessions, and a sign-out or password reset on one ends the session
on all.  Rows there carry the app's *realm* (its state folder's name), so
two web apps sharing the database never see, count or end each other's.
Schema versions: the ``sessions-`` migrations (`safebus.consumers.migrations`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from safebus.clock import utc_now
from safebus.consumers.migrations import MIGRATIONS
from safebus.logs import get_logger
from safebus.migrations import Schema
from safebus.settings import database_url
from safebus.sql_store import Database

__all__ = ["SESSIONS_SCHEMA", "Session", "SessionStore", "end_sessions_of", "open_sessions", "sessions_path"]

_log = get_logger("consumers.web_sessions")

_MAX_ID_CHARS = 64
"""A session id is 43 characters; anything much longer is not one of ours and is not even hashed."""

SESSIONS_SCHEMA = Schema("sessions", MIGRATIONS)
"""The sessions' schema versions: 0002 added the realm, for web apps that share one database."""


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
    The sessions of one web app at `location` (a SQLite path or a PostgreSQL URL; ``None``: in memory, for tests).

    Thread-safe (one connection under a lock); several processes, or hosts,
    may share the database.  `realm` tells this app's rows from another's
    in a shared database.  `clock` gives the time, so tests control expiry.
    """

    def __init__(self, location: Path | str | None, *, clock: Callable[[], datetime], realm: str = "") -> None:
        """Open (creating, mode 0700 directory for a file, and upgrading) the session database at `location`."""
        if isinstance(location, Path):
            location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = Database(location, SESSIONS_SCHEMA)
        self._clock = clock
        self.realm = realm

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def start(self, *, user_id: str, version: str, ttl: timedelta) -> tuple[str, Session]:
        """A new session for `user_id` lasting `ttl`: the id to put in the cookie, and the session."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(handle=_digest(session_id), user_id=user_id, version=version, expires=now + ttl)
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE expires <= ?", (now.timestamp(),))
            cursor.execute("INSERT INTO sessions (id_hash, user_id, version, expires, realm) VALUES (?, ?, ?, ?, ?)",
                           (session.handle, user_id, version, session.expires.timestamp(), self.realm))
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        """The live session `session_id` names, or None (unknown, ended, expired or another app's: all the same)."""
        if not session_id or len(session_id) > _MAX_ID_CHARS:
            return None
        handle = _digest(session_id)
        with self._db.transaction() as cursor:
            row = cursor.execute("SELECT user_id, version, expires FROM sessions WHERE id_hash = ? AND realm = ?",
                                 (handle, self.realm)).fetchone()
        if row is None or row[2] <= self._clock().timestamp():
            return None
        return Session(handle=handle, user_id=row[0], version=row[1],
                       expires=datetime.fromtimestamp(row[2], tz=self._clock().tzinfo))

    def end(self, session: Session) -> None:
        """End one session (sign-out)."""
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE id_hash = ? AND realm = ?", (session.handle, self.realm))

    def end_all_for(self, user_id: str) -> int:
        """End every session of `user_id` (password reset, account removed); return how many there were."""
        with self._db.transaction() as cursor:
            ended = cursor.execute("DELETE FROM sessions WHERE user_id = ? AND realm = ?",
                                   (user_id, self.realm)).rowcount
        _log.info("web.sessions_ended", user_id=user_id, sessions=ended)
        return ended

    def count_for(self, user_id: str) -> int:
        """How many live sessions `user_id` has."""
        with self._db.transaction() as cursor:
            row = cursor.execute("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND realm = ? AND expires > ?",
                                 (user_id, self.realm, self._clock().timestamp())).fetchone()
        return int(row[0])


def open_sessions(app_dir: Path | None, *, clock: Callable[[], datetime]) -> SessionStore:
    """
    The sessions of the web app whose state lives in `app_dir`: the shared database when one is set, else its file.

    In the shared database the app's realm is `app_dir`'s name
    (``school-inbox``, or the audit log's prefix); its own file needs none.
    None is in memory (tests).
    """
    if app_dir is None:
        return SessionStore(None, clock=clock)
    shared = database_url()
    if shared is not None:
        return SessionStore(shared, clock=clock, realm=app_dir.name)
    return SessionStore(sessions_path(app_dir), clock=clock)


def end_sessions_of(app_dir: Path, user_id: str) -> int:
    """End every session of `user_id` in the web app whose state lives in `app_dir` (the account commands)."""
    if database_url() is None and not sessions_path(app_dir).exists():
        return 0
    store = open_sessions(app_dir, clock=utc_now)
    try:
        return store.end_all_for(user_id)
    finally:
        store.close()

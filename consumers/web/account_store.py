"""
Password accounts in a shared database: each kind's accounts document (Key Adults, officers) as one row.

Web instances on several hosts must agree on who may sign in, and a password
reset on one must end the old password everywhere at once.  The accounts
stay exactly what `safebus.account_files` makes them (one JSON document per
kind, scrypt hashes, the same checks and timing); only where the document is
kept changes: a row of ``account_documents``, whose ``revision`` rises with
every change, so each read costs one small query and a re-read only after a
change.  A change is made in one exclusive transaction (re-read, change,
write), as the file's lock did.

A partnership that moves to the shared database keeps its accounts: while
the database has no document of a kind, the first host to look copies its
file in (`seed`), once.  After that the file is no longer read.  Schema
versions: the ``accounts-`` migrations (`safebus.consumers.migrations`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

from safebus.account_files import AccountSource, FileSource
from safebus.consumers.migrations import MIGRATIONS
from safebus.logs import get_logger
from safebus.migrations import Schema
from safebus.settings import database_url
from safebus.sql_dialects import RewritingCursor, location_text
from safebus.sql_store import Database

__all__ = ["ACCOUNTS_SCHEMA", "DatabaseSource", "account_source"]

_log = get_logger("consumers.account_store")

ACCOUNTS_SCHEMA = Schema("accounts", MIGRATIONS)
"""The account documents' schema versions."""


class DatabaseSource:
    """
    The accounts document `name` (``key-adults``, ``officers``) in the database at `location`.

    `seed` is the accounts file copied in while the database holds no
    document of this name; `what` names the kind in messages.
    """

    def __init__(self, location: Path | str, *, name: str, what: str, seed: Path | None = None) -> None:
        """Open (creating and upgrading) the account documents at `location`."""
        self._db = Database(location, ACCOUNTS_SCHEMA)
        self.name = name
        self._where = f"{location_text(location)} ({name})"
        self._seed = FileSource(seed, what=what) if seed is not None else None

    @property
    def where(self) -> str:
        """The database and the document's name."""
        return self._where

    def stamp(self) -> Hashable | None:
        """The document's revision; None while there is none (after copying the seed file in, if there is one)."""
        with self._db.transaction() as cursor:
            revision = _revision(cursor, self.name)
        if revision is None and self._seed is not None and self._seed.stamp() is not None:
            revision = self._import_seed()
        return revision

    def _import_seed(self) -> int | None:
        assert self._seed is not None
        with self._db.transaction(exclusive="account_documents") as cursor:
            revision = _revision(cursor, self.name)
            if revision is not None:
                return revision  # another host copied it in first
            text = self._seed.read()
            if text is None:
                return None
            cursor.execute("INSERT INTO account_documents (name, content, revision) VALUES (?, ?, 1)",
                           (self.name, text))
        _log.info("accounts.imported", name=self.name, source=self._seed.where)
        return 1

    def read(self) -> str | None:
        """The document now; None while there is none."""
        with self._db.transaction() as cursor:
            row = cursor.execute("SELECT content FROM account_documents WHERE name = ?", (self.name,)).fetchone()
        return None if row is None else str(row[0])

    def replace(self, change: Callable[[str | None], str]) -> None:
        """Re-read, change and write the document in one exclusive transaction (nothing written if `change` raises)."""
        self.stamp()  # a seed file still to copy in is the current document
        with self._db.transaction(exclusive="account_documents") as cursor:
            row = cursor.execute("SELECT content FROM account_documents WHERE name = ?", (self.name,)).fetchone()
            text = change(None if row is None else str(row[0]))
            cursor.execute("INSERT INTO account_documents (name, content, revision) VALUES (?, ?, 1) "
                           "ON CONFLICT (name) DO UPDATE SET content = excluded.content, "
                           "revision = account_documents.revision + 1", (self.name, text))

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _revision(cursor: RewritingCursor, name: str) -> int | None:
    row = cursor.execute("SELECT revision FROM account_documents WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def account_source(path: Path, *, name: str, what: str) -> AccountSource | None:
    """
    Where accounts of this kind live: the shared database when ``SAFEBUS_DATABASE_URL`` names one, else None.

    None means the file at `path`, as always; in the database, `path` is the
    file copied in once while the database has none.
    """
    url = database_url()
    return None if url is None else DatabaseSource(url, name=name, what=what, seed=path)

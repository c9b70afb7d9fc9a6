"""
A durable outbox of e-mail messages: put in once, sent once, kept until then.

Each message is stored whole (its RFC 5322 bytes, Message-ID included) under a
key its writer derives from what it is about, so putting the same notice in
twice (a batch redelivered after a crash) stores it once, and every retry
sends the same bytes with the same Message-ID: a relay or mailbox that saw a
copy before can tell. A message the relay could not take waits with a growing
delay (`RetryPolicy`); one it refused for good (a 5xx answer, say an unknown
mailbox) is kept as refused, for the ops team to see, never retried blindly.

SQLite, one file per worker process (its own outbox, so two senders never race
for one message); the sender runs in its own thread, so the connection is
shared under a lock.  `MailOutbox` takes a PostgreSQL URL too (schema
versions: the ``mail-`` migrations, `safebus.consumers.migrations`), but the
workers keep their own files: one outbox table shared by two senders would
let both send one message, since `due` claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from safebus.consumers.migrations import MIGRATIONS
from safebus.migrations import Schema
from safebus.sql_store import Database

__all__ = ["MAIL_SCHEMA", "MailOutbox", "OutboxCounts", "Pending", "RetryPolicy"]

MAIL_SCHEMA = Schema("mail", MIGRATIONS)
"""The outbox's schema versions."""


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts: `first`, doubling each time, never longer than `longest`."""

    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after the `attempts`-th failed attempt (1 for the first)."""
        return min(self.first * (1 << min(max(attempts, 1) - 1, 30)), self.longest)


@dataclass(frozen=True)
class Pending:
    """A message due to be sent."""

    key: str
    message: EmailMessage
    attempts: int


@dataclass(frozen=True)
class OutboxCounts:
    """How many messages are in each state: the outbox depth the ops team watches."""

    pending: int
    sent: int
    refused: int


def _at(moment: datetime) -> str:
    """One fixed text form (UTC, microseconds), so SQLite's text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class MailOutbox:
    """The outbox at `location` (a SQLite path, or a PostgreSQL URL; created and upgraded on first use)."""

    def __init__(self, location: Path | str, *, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self._db = Database(location, MAIL_SCHEMA)

    def put(self, key: str, message: EmailMessage, *, now: datetime) -> bool:
        """Keep `message` under `key` to be sent at once; False (and nothing changed) if the key is already in."""
        with self._db.transaction() as cursor:
            return cursor.execute(
                "INSERT INTO outbox (key, message, queued_at, next_attempt_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING", (key, bytes(message), _at(now), _at(now))).rowcount == 1

    def due(self, now: datetime, *, limit: int = 100) -> list[Pending]:
        """The pending messages whose next attempt is due, oldest first."""
        with self._db.transaction() as cursor:
            rows = cursor.execute(
                "SELECT key, message, attempts FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY queued_at, key LIMIT ?", (_at(now), limit)).fetchall()
        return [Pending(key=key, message=message_from_bytes(raw, policy=policy.default),
                        attempts=attempts) for key, raw, attempts in rows]

    def sent(self, key: str, *, now: datetime) -> None:
        """The relay took the message: it is never sent again."""
        self._finish(key, "sent", now, None)

    def refused(self, key: str, *, now: datetime, reason: str) -> None:
        """The relay refused the message for good (a 5xx answer): kept as refused, not retried."""
        self._finish(key, "refused", now, reason)

    def failed(self, key: str, *, now: datetime, reason: str) -> datetime:
        """The attempt failed for now (relay away, 4xx): try again after the policy's delay; return when."""
        with self._db.transaction() as cursor:
            (attempts,) = cursor.execute("SELECT attempts FROM outbox WHERE key = ?", (key,)).fetchone()
            retry_at = now + self.retry.delay(attempts + 1)
            cursor.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                           "WHERE key = ? AND state = 'pending'", (_at(retry_at), reason, key))
        return retry_at

    def counts(self) -> OutboxCounts:
        """How many messages are pending, sent and refused."""
        with self._db.transaction() as cursor:
            found = {state: int(n) for state, n in cursor.execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()}
        return OutboxCounts(pending=found.get("pending", 0), sent=found.get("sent", 0),
                            refused=found.get("refused", 0))

    def next_due(self) -> datetime | None:
        """When the earliest pending message is due, or None when nothing is pending."""
        with self._db.transaction() as cursor:
            (earliest,) = cursor.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'").fetchone()
        return datetime.fromisoformat(earliest) if earliest else None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _finish(self, key: str, state: str, now: datetime, reason: str | None) -> None:
        with self._db.transaction() as cursor:
            cursor.execute("UPDATE outbox SET state = ?, done_at = ?, attempts = attempts + 1, last_error = ? "
                           "WHERE key = ? AND state = 'pending'", (state, _at(now), reason, key))

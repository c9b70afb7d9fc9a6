"""
Replay defence: each event id is routed once, and only inside a clock window.

`ReplayGuard` remembers every event id with the record it first arrived in
(topic, partition, offset).  The same record arriving again is a *redelivery*
(at-least-once after a crash) and is processed again — safe, because every
output has a deterministic id.  The same event id in a *different* record is a
replay or a duplicate publish, and is dropped to the dead-letter topic with
where it was first seen.  Both checks run after the signature is verified, so
the event id and creation time they trust are the producer's own.

The seen-set is local to a router instance; events about one incident share a
key and so a partition, which keeps replays of them on the instance that saw
the original.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path

from safebus.processors.batched import BatchedCommits
from safebus.records import Origin

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_INCIDENT_AGE",
    "DEFAULT_MAX_SKEW",
    "ClockWindow",
    "PayloadWindow",
    "ReplayGuard",
    "Sighting",
    "payload_window_from_env",
]

DEFAULT_MAX_AGE = timedelta(days=7)
"""Older events are refused: longer than any outage we replay through, far shorter than a replay attack needs."""
DEFAULT_MAX_SKEW = timedelta(minutes=5)
"""How far in the future a producer's clock may be."""
DEFAULT_MAX_INCIDENT_AGE = timedelta(days=90)
"""Older incidents are refused unless an operator starts a backfill: a late share is weeks late, not years."""
_PAYLOAD_TIMES = ("incident_at", "occurred_at")


class Sighting(StrEnum):
    """What the guard knows about an event id."""

    NEW = "new"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class ClockWindow:
    """The accepted range of creation times around now."""

    max_age: timedelta = DEFAULT_MAX_AGE
    max_skew: timedelta = DEFAULT_MAX_SKEW

    def admits(self, created_at: datetime, now: datetime) -> bool:
        """True when `created_at` is neither too old nor too far in the future."""
        return now - self.max_age <= created_at <= now + self.max_skew


@dataclass(frozen=True)
class PayloadWindow:
    """
    The accepted range of the times *inside* a payload (when the incident happened), around now.

    The envelope's creation time says when the police system sent the event;
    the payload says when the incident happened, and a typo there (a year
    wrong either way) would start clocks that mean nothing.  Nothing may have
    happened in the future beyond the clock skew; an incident routed to
    schools and services must be at most `max_age` old, unless the operator
    started the router with an audited backfill (`backfill_from`).
    """

    max_age: timedelta = DEFAULT_MAX_INCIDENT_AGE
    max_skew: timedelta = DEFAULT_MAX_SKEW
    backfill_from: datetime | None = None

    def refusal(self, payload: object, now: datetime, *, routed: bool) -> str | None:
        """Why `payload`'s times are implausible (field and which way), or None; `routed` checks the age too."""
        oldest = now - self.max_age
        if self.backfill_from is not None:
            oldest = min(oldest, self.backfill_from)
        for name in _PAYLOAD_TIMES:
            value = getattr(payload, name, None)
            if not isinstance(value, datetime):
                continue
            if value > now + self.max_skew:
                return f"{name} is in the future (more than {self.max_skew.total_seconds():.0f} s ahead)"
            if routed and value < oldest:
                return (f"{name} is older than {self.max_age.days} days; routing older incidents needs "
                        "'safebus processor run --backfill-from DATE'")
        return None


def payload_window_from_env(*, backfill_from: date | None = None) -> PayloadWindow:
    """The window from ``SAFEBUS_MAX_INCIDENT_AGE_DAYS`` and ``SAFEBUS_MAX_CLOCK_SKEW_SECONDS``, with a backfill."""
    days = float(os.environ.get("SAFEBUS_MAX_INCIDENT_AGE_DAYS", DEFAULT_MAX_INCIDENT_AGE / timedelta(days=1)))
    skew = float(os.environ.get("SAFEBUS_MAX_CLOCK_SKEW_SECONDS", DEFAULT_MAX_SKEW.total_seconds()))
    start = datetime.combine(backfill_from, time(), UTC) if backfill_from else None
    return PayloadWindow(max_age=timedelta(days=days), max_skew=timedelta(seconds=skew), backfill_from=start)


class ReplayGuard(BatchedCommits):
    """The router's durable record of event ids already routed."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the seen-set at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, "
            "partition INTEGER NOT NULL, offset INTEGER NOT NULL)"
        )

    def sight(self, event_id: str, origin: Origin) -> tuple[Sighting, str]:
        """Record `event_id` at `origin`; return whether it is new, a redelivery or a duplicate (and where first)."""
        with self._write():
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)",
                (event_id, origin.topic, origin.partition, origin.offset),
            ).rowcount
            if inserted:
                return Sighting.NEW, ""
            topic, partition, offset = self._db.execute(
                "SELECT topic, partition, offset FROM seen WHERE event_id = ?", (event_id,)
            ).fetchone()
        first = f"{topic}[{partition}]@{offset}"
        if (topic, partition, offset) == (origin.topic, origin.partition, origin.offset):
            return Sighting.REDELIVERY, first
        return Sighting.DUPLICATE, first

"""
Sign-in throttling: growing delays per account and per source, reserved before any password is checked.

NIST SP 800-63B (5.2.2) asks a verifier to limit failed attempts without
letting an attacker lock the real user out; it suggests delays that grow
after each failure, and trusting a device that has signed in before.  This
module does exactly that, and nothing else:

- **A lane is a key with a failure count.**  ``account:<id>`` (every wrong
  password for that id, from anywhere), ``source:<address>`` (every wrong
  password from one address, for any id; an IPv6 address counts by its /64)
  and ``device:<id>`` (a browser that has signed in to that account before).
- **After n failures a lane waits** ``min(cap, base * 2**(n-1-free))``
  seconds from its last failure before the next password is checked (1 s,
  2 s, 4 s ... 15 min by default, `ThrottlePolicy`).  It never locks: once the
  wait has passed, the right password works, and a success clears the
  account's lane.  A lane with no failure for `forget_after` starts again
  from zero.  A source lane allows a few failures before it waits
  (`DEFAULT_POLICIES`): a school's staff share one address, and their typing
  mistakes should not slow each other down.
- **Reserved before the check, atomically.**  `reserve` runs one exclusive
  transaction (SQLite's ``BEGIN IMMEDIATE``, a table lock on PostgreSQL):
  if every lane is open, it records the attempt *as a failure* (count + 1,
  last failure = now) and only then returns; `succeeded` undoes that
  afterwards.  So concurrent guesses, in one process or several sharing the
  database, cannot all be checked: the first
  attempts past a lane's free allowance close it for at least `base`
  seconds before their password is even hashed, and the rest are refused
  unchecked (of 40 at once at one account, two are checked).
- **A third party cannot lock the right user out.**  A request carrying a
  valid device cookie for the account it signs in to (issued by the web app
  after a correct password, see `safebus.consumers.web.pages`) is throttled
  on its device lane alone: other people's guesses fill the account and
  source lanes, never that browser's.  A browser that has never signed in
  waits like anyone else while an account is under attack; that is the limit
  of what a throttle can do without a second factor.

Why it is written here rather than taken from a library: the rate limiters
we looked at (``limits``, ``pyrate-limiter``) count requests in windows or
buckets; none grows a delay with consecutive *failures*, undoes a reserved
attempt on success, or shares its state across processes through a file we
already have.  What is needed is one small table and one transaction
(docs/adr/0010).  The table is in a SQLite file of the web app's, or in the
shared database several instances behind one address use (schema versions:
the ``throttle-`` migrations, `safebus.consumers.migrations`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safebus.consumers.migrations import MIGRATIONS
from safebus.errors import SafebusError
from safebus.logs import get_logger
from safebus.migrations import Schema
from safebus.sql_dialects import RewritingCursor
from safebus.sql_store import Database

__all__ = [
    "DEFAULT_POLICIES", "THROTTLE_SCHEMA", "Reservation", "SignInThrottle", "ThrottlePolicy", "Throttled",
    "source_lane",
]

_log = get_logger("consumers.sign_in_throttle")


@dataclass(frozen=True, kw_only=True)
class ThrottlePolicy:
    """How long a lane waits after its failures: ``min(cap_s, base_s * 2**(failures - 1 - free))``, or 0."""

    base_s: float = 1.0
    cap_s: float = 15 * 60.0
    free_failures: int = 0
    """Failures the lane takes before it waits at all."""
    forget_after_s: float = 24 * 3600.0
    """A lane whose last failure is older than this starts from zero."""

    def delay(self, failures: int) -> float:
        """Seconds a lane with `failures` waits after its last failure."""
        beyond = failures - self.free_failures
        if beyond <= 0:
            return 0.0
        return min(self.cap_s, self.base_s * 2.0 ** min(beyond - 1, 60))


DEFAULT_POLICIES: Mapping[str, ThrottlePolicy] = {
    "account": ThrottlePolicy(free_failures=1),
    "device": ThrottlePolicy(free_failures=1),
    "source": ThrottlePolicy(free_failures=5),
}
"""
The one place the sign-in delays are stated, per kind of lane: one typing mistake is free, then 1 s, doubling
with each wrong password, at most 15 minutes (under 100 guesses a day at one account, NIST SP 800-63B's
ceiling); a source address takes five failures before it waits.
"""


class Throttled(SafebusError):
    """The attempt was refused before its password was checked; `retry_after_s` says when one may be."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Reservation:
    """An attempt admitted by `SignInThrottle.reserve`: each lane it holds and its (failures, last failure) before."""

    lanes: Mapping[str, tuple[int, float]]


def source_lane(address: str | None) -> str:
    """The source lane of a peer address: the address itself, an IPv6 address by its /64 (one host's range)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return "source:unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"source:{ip.ipv4_mapped}"
        return f"source:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"source:{ip}"


THROTTLE_SCHEMA = Schema("throttle", MIGRATIONS)
"""The lanes' schema versions."""


class SignInThrottle:
    """
    The lanes of one web app at `location`: a SQLite path or PostgreSQL URL shared by its processes, or ``None``.

    ``None`` is memory, for tests.  Thread-safe: one connection, used under
    a lock; across processes the exclusive transaction is the lock.  `clock`
    gives the time (injected so tests can let a delay pass).
    """

    def __init__(self, location: Path | str | None, *, clock: Callable[[], datetime],
                 policies: Mapping[str, ThrottlePolicy] = DEFAULT_POLICIES) -> None:
        """Open (creating, and upgrading) the lanes at `location`."""
        if isinstance(location, Path):
            location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = Database(location, THROTTLE_SCHEMA)
        self._clock = clock
        self.policies = dict(policies)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _now(self) -> float:
        return self._clock().timestamp()

    def reserve(self, *, account: str, source: str | None, device: str | None = None) -> Reservation:
        """
        Admit one password check for `account` from `source`, or raise `Throttled` without admitting it.

        With a `device` (the id of a valid device cookie for this account) the
        attempt uses the device's lane only; otherwise the account's and the
        source's.  The admitted attempt already counts as a failure of each
        lane it holds, so a concurrent attempt finds them closed.
        """
        lanes = (f"device:{device}",) if device else (f"account:{account.casefold()}", source_lane(source))
        now = self._now()
        with self._db.transaction(exclusive="lanes") as cursor:
            rows = {lane: self._row(cursor, lane, now) for lane in lanes}
            wait = max((last + self._policy(lane).delay(failures) - now for lane, (failures, last) in rows.items()),
                       default=0.0)
            if wait <= 0:
                for lane, (failures, _) in rows.items():
                    cursor.execute("INSERT INTO lanes (lane, failures, last_failure) VALUES (?, ?, ?) "
                                   "ON CONFLICT (lane) DO UPDATE SET failures = excluded.failures, "
                                   "last_failure = excluded.last_failure", (lane, failures + 1, now))
        if wait > 0:
            raise Throttled(wait)
        return Reservation(rows)

    def _policy(self, lane: str) -> ThrottlePolicy:
        return self.policies[lane.split(":", 1)[0]]

    def _row(self, cursor: RewritingCursor, lane: str, now: float) -> tuple[int, float]:
        found = cursor.execute("SELECT failures, last_failure FROM lanes WHERE lane = ?", (lane,)).fetchone()
        if found is None or now - found[1] > self._policy(lane).forget_after_s:
            return 0, 0.0
        return int(found[0]), float(found[1])

    def succeeded(self, reservation: Reservation) -> None:
        """
        The password was right: clear the account's (or device's) lane and take back the source's reserved failure.

        The source keeps its earlier failures, so signing in to one's own
        account between guesses at others' does not reset them.
        """
        with self._db.transaction(exclusive="lanes") as cursor:
            for lane, (failures, last) in reservation.lanes.items():
                if lane.startswith("source:"):  # back to how it was, unless others have failed since
                    cursor.execute("UPDATE lanes SET failures = ?, last_failure = ? WHERE lane = ? "
                                   "AND failures = ?", (failures, last, lane, failures + 1))
                else:
                    cursor.execute("DELETE FROM lanes WHERE lane = ?", (lane,))

    def failures(self, lanes: Sequence[str]) -> dict[str, int]:
        """The current failure count of each lane (for tests and operators)."""
        now = self._now()
        with self._db.transaction() as cursor:
            return {lane: self._row(cursor, lane, now)[0] for lane in lanes}

    def prune(self) -> int:
        """Forget lanes whose last failure is older than the longest `forget_after_s`; return how many."""
        cutoff = self._now() - max(policy.forget_after_s for policy in self.policies.values())
        with self._db.transaction() as cursor:
            return cursor.execute("DELETE FROM lanes WHERE last_failure < ?", (cutoff,)).rowcount

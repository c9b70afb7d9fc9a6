"""
A bounded second chance for records dead-lettered only because the directory had not caught up.

Why: keys rotate and agencies are added while everything runs.  A record
sealed for a key this worker has not seen yet (``wrong-recipient``), or
signed by an agency or key it does not know yet (``unknown-sender``,
``unknown-fact-signer``), is refused for a reason that the next directory
change may remove.  Refusing it for good would lose a share that was lawful
and correctly sealed; waiting for it without bound would hide a real forgery.

So a worker dead-letters such a record as before (the dead letter is durable
and audited at once: nothing depends on this memory), and also *holds* it
here.  Each time the worker's directory changes, every held record is tried
again through the worker's own admission code:

- admitted: it is delivered (and the delivery audited as usual), and the
  retry is logged as ``dead_letter_retry`` with ``outcome=delivered``;
- refused again: logged with ``outcome=refused`` and its reason, and held
  for the next change;
- after `RetryPolicy.max_attempts` tries, or once it has been held for
  `RetryPolicy.max_age`, it is let go (``outcome=gave-up``): the dead letter
  stands, and an operator can see both the refusal and the attempts.

What is held is memory only, bounded by `RetryPolicy.max_held` (the oldest is
let go first): a worker that restarts has reloaded its directory anyway, and
whatever it held is still on the dead-letter topic with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from safebus.logs import get_logger
from safebus.records import DLQ_REASON, Origin, Output, Record

__all__ = ["RETRYABLE_REASONS", "HeldDeadLetters", "RetryOutcome", "RetryPolicy"]

_log = get_logger("dead_letter_retry")
A = TypeVar("A")

RETRYABLE_REASONS = frozenset({"wrong-recipient", "unknown-sender", "unknown-fact-signer"})
"""Refusals a directory change can cure: a key or an agency not yet known.  Nothing else is ever retried."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """The bounds of the second chance, in one place."""

    max_attempts: int = 3
    """Directory changes a held record is tried at; a rotation takes one, an onboarding at most two."""
    max_age: timedelta = timedelta(hours=1)
    """Longest a record is held: directory changes are published within minutes of being made."""
    max_held: int = 10_000
    """Most records held at once (memory); beyond it the oldest is let go, its dead letter standing."""
    reasons: frozenset[str] = RETRYABLE_REASONS


@dataclass
class _Held:
    record: Record
    reason: str
    held_at: datetime
    attempts: int = 0


@dataclass
class RetryOutcome(Generic[A]):
    """What one round of retries did."""

    admitted: list[A] = field(default_factory=list)
    refused: int = 0
    gave_up: int = 0


class HeldDeadLetters(Generic[A]):
    """The records one worker dead-lettered for a retryable reason, waiting for a directory change."""

    def __init__(self, *, what: str, clock: Callable[[], datetime], policy: RetryPolicy | None = None) -> None:
        """`what` names the worker's records in the logs (``alerts``, ``referrals``)."""
        self.what = what
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self._held: dict[tuple[str, int, int], _Held] = {}

    def __len__(self) -> int:
        """How many records are held."""
        return len(self._held)

    def hold(self, record: Record, reason: str) -> bool:
        """
        Keep a just-refused record for retrying, if its reason is retryable; return whether it is held.

        Holding the same record again (a retry refused again, a redelivery)
        keeps its first time and its attempts.
        """
        if reason not in self.policy.reasons:
            return False
        place = (record.topic, record.partition, record.offset)
        if place not in self._held:
            while len(self._held) >= self.policy.max_held:
                oldest = next(iter(self._held))
                self._let_go(self._held.pop(oldest), "held-limit")
            self._held[place] = _Held(record=record, reason=reason, held_at=self.clock())
            _log.info("dead_letter_held", what=self.what, topic=record.topic, partition=record.partition,
                      offset=record.offset, reason=reason)
        return True

    def hold_raw(self, raw: bytes, origin: Origin, reason: str) -> bool:
        """As `hold`, for a consumer that refused `raw` from `origin` (headers are not needed to admit it)."""
        return self.hold(Record(topic=origin.topic, partition=origin.partition, offset=origin.offset,
                                key=origin.key, value=raw), reason)

    def retry(self, admit: Callable[[Record], A | Output]) -> RetryOutcome[A]:
        """
        Try every held record again with `admit` (the worker's own admission); return what was admitted.

        `admit` returns what to store, or the dead letter it would write (which
        is not written again: the first one stands).  It may call `hold` again
        for a record it refuses (the usual path): that keeps the record's place.
        The caller stores and audits the admitted records as it does any other.
        """
        outcome: RetryOutcome[A] = RetryOutcome()
        now = self.clock()
        for place, held in list(self._held.items()):
            held.attempts += 1
            result = admit(held.record)
            log = _log.bind(what=self.what, topic=held.record.topic, partition=held.record.partition,
                            offset=held.record.offset, reason=held.reason, attempt=held.attempts)
            if not isinstance(result, Output):
                self._held.pop(place, None)
                outcome.admitted.append(result)
                log.info("dead_letter_retry", outcome="delivered")
                continue
            outcome.refused += 1
            log.info("dead_letter_retry", outcome="refused", now_refused_as=_reason_of(result))
            if held.attempts >= self.policy.max_attempts or now - held.held_at >= self.policy.max_age \
                    or _reason_of(result) not in self.policy.reasons:
                self._held.pop(place, None)
                self._let_go(held, "bound-reached")
                outcome.gave_up += 1
        return outcome

    def _let_go(self, held: _Held, why: str) -> None:
        _log.warning("dead_letter_retry", outcome="gave-up", why=why, what=self.what, topic=held.record.topic,
                     partition=held.record.partition, offset=held.record.offset, reason=held.reason,
                     attempts=held.attempts)


def _reason_of(dead: Output) -> str:
    """The reason header of a dead letter built by `safebus.records.dead_letter`."""
    return next((value.decode() for name, value in dead.headers if name == DLQ_REASON), "")

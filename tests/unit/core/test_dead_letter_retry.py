"""The bound on retrying dead letters: only curable reasons, at most N tries, for at most T, in bounded memory."""

from __future__ import annotations

from datetime import datetime, timedelta

from safebus.dead_letter_retry import HeldDeadLetters, RetryPolicy
from safebus.records import Origin, Output, Record, dead_letter
from tests.conftest import FIXED_NOW


def _origin(offset: int) -> Origin:
    return Origin(topic="t.egress.northdale-police.referral", partition=0, offset=offset)


def _refuse(record: Record, reason: str = "wrong-recipient") -> Output:
    return dead_letter(raw=record.value, origin=_origin(record.offset), stage="deliver", reason=reason, detail="",
                       topic="t.deadletter")


def _held(policy: RetryPolicy | None = None, clock: list[datetime] | None = None) -> HeldDeadLetters[str]:
    moment = clock or [FIXED_NOW]
    return HeldDeadLetters(what="referrals", clock=lambda: moment[0], policy=policy)


def test_only_reasons_a_directory_change_can_cure_are_held() -> None:
    """A bad signature or a schema violation is final; an unknown key or sender is worth another look."""
    held = _held()
    assert held.hold_raw(b"a", _origin(1), "wrong-recipient")
    assert held.hold_raw(b"b", _origin(2), "unknown-sender")
    assert held.hold_raw(b"c", _origin(3), "unknown-fact-signer")
    assert not held.hold_raw(b"d", _origin(4), "bad-signature")
    assert not held.hold_raw(b"e", _origin(5), "schema-violation")
    assert len(held) == 3


def test_a_record_admitted_on_retry_is_released_once() -> None:
    """Delivered on the first retry: handed back once, never again."""
    held = _held()
    held.hold_raw(b"a", _origin(1), "wrong-recipient")
    assert held.retry(lambda record: f"delivered {record.offset}").admitted == ["delivered 1"]
    assert len(held) == 0
    assert held.retry(lambda record: "again").admitted == []


def test_after_max_attempts_the_dead_letter_stands() -> None:
    """Refused at every directory change: tried exactly max_attempts times, then let go."""
    held = _held(RetryPolicy(max_attempts=3))
    held.hold_raw(b"a", _origin(1), "wrong-recipient")
    tries: list[int] = []

    def refuse(record: Record) -> str | Output:
        tries.append(record.offset)
        held.hold(record, "wrong-recipient")  # the worker's own refusal path holds it again: a no-op
        return _refuse(record)

    outcomes = [held.retry(refuse) for _ in range(5)]
    assert len(tries) == 3
    assert [o.gave_up for o in outcomes] == [0, 0, 1, 0, 0]
    assert len(held) == 0


def test_after_max_age_the_dead_letter_stands() -> None:
    """A record held longer than max_age is let go at its next refusal, whatever its attempts."""
    clock = [FIXED_NOW]
    held = _held(RetryPolicy(max_attempts=100, max_age=timedelta(hours=1)), clock)
    held.hold_raw(b"a", _origin(1), "unknown-sender")
    assert held.retry(lambda r: _refuse(r, "unknown-sender")).gave_up == 0
    clock[0] = FIXED_NOW + timedelta(hours=1)
    assert held.retry(lambda r: _refuse(r, "unknown-sender")).gave_up == 1
    assert len(held) == 0


def test_refused_for_a_final_reason_on_retry_ends_the_retries() -> None:
    """The key is now known but the signature is bad: that is final, not another wait."""
    held = _held()
    held.hold_raw(b"a", _origin(1), "unknown-sender")
    assert held.retry(lambda r: _refuse(r, "bad-signature")).gave_up == 1
    assert len(held) == 0


def test_memory_is_bounded_oldest_let_go_first() -> None:
    """Past max_held the oldest record is let go (its dead letter stands); the newest are kept."""
    held = _held(RetryPolicy(max_held=2))
    for offset in (1, 2, 3):
        held.hold_raw(b"x", _origin(offset), "wrong-recipient")
    assert len(held) == 2
    assert sorted(held.retry(lambda r: str(r.offset)).admitted) == ["2", "3"]


def test_holding_the_same_record_twice_keeps_one() -> None:
    """A redelivered record (same place) is held once, with its first time and attempts."""
    held = _held()
    held.hold_raw(b"a", _origin(1), "wrong-recipient")
    held.hold_raw(b"a", _origin(1), "wrong-recipient")
    assert len(held) == 1

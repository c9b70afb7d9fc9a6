"""
Sign-in throttling (issue 11, bullet 6): growing delays per account and per source, never a lock of the right user.

The throttle's own file is real SQLite; the clock is a hand-moved one, so a
"15-minute" delay passes in no time.  Two throttles on one file stand for two
processes of one web app.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from safebus.consumers.web.sign_in_throttle import DEFAULT_POLICIES, SignInThrottle, Throttled, source_lane
from tests.conftest import FIXED_NOW

KA, DEPUTY = "900101-ka", "900101-deputy"
ATTACKER, SCHOOL, ELSEWHERE = "203.0.113.7", "198.51.100.20", "192.0.2.44"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    """Starts at the suite's fixed instant."""
    return Clock()


@pytest.fixture
def throttle(tmp_path: Path, clock: Clock) -> SignInThrottle:
    """The throttle with the default policy, in a file."""
    return SignInThrottle(tmp_path / "throttle.sqlite", clock=clock)


def _fail(throttle: SignInThrottle, clock: Clock, times: int, *, account: str = KA, source: str = ATTACKER) -> None:
    """`times` wrong passwords, each sent the moment the previous delay has passed."""
    for _ in range(times):
        while True:
            try:
                throttle.reserve(account=account, source=source)  # a wrong password: nothing to settle
                break
            except Throttled as refused:
                clock.advance(refused.retry_after_s)


def _wait(throttle: SignInThrottle, **attempt: str) -> float:
    """How long the attempt is told to wait (0 if it was admitted; then it is settled as a success)."""
    try:
        reservation = throttle.reserve(**attempt)
    except Throttled as refused:
        return refused.retry_after_s
    throttle.succeeded(reservation)
    return 0.0


class TestGrowingDelays:
    def test_each_wrong_password_doubles_the_wait_up_to_the_cap(self, throttle: SignInThrottle, clock: Clock) -> None:
        """One typo free, then 1 s, 2 s, 4 s ... after each failure, never more than 15 minutes, never a hard lock."""
        waits = []
        for failures in range(1, 15):
            while True:  # a wrong guess, sent again each time it is refused, the moment its wait has passed
                try:
                    throttle.reserve(account=KA, source=ATTACKER)
                    break
                except Throttled as refused:
                    waits.append(refused.retry_after_s)
                    clock.advance(refused.retry_after_s)
            assert throttle.failures([f"account:{KA}"])[f"account:{KA}"] == failures
        assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]  # nothing before the second failure: one typo is free
        assert len(waits) == 12  # before the 3rd ... 14th guess
        assert waits[-1] == DEFAULT_POLICIES["account"].cap_s == 15 * 60
        assert all(later >= earlier for earlier, later in itertools.pairwise(waits))

    def test_the_right_password_works_once_the_delay_has_passed(self, throttle: SignInThrottle, clock: Clock) -> None:
        """After ten wrong guesses the Key Adult waits, then is admitted, and success clears the account's lane."""
        _fail(throttle, clock, 10, source=SCHOOL)
        wait = _wait(throttle, account=KA, source=SCHOOL)
        assert wait == pytest.approx(256.0)
        clock.advance(wait)
        reservation = throttle.reserve(account=KA, source=SCHOOL)  # admitted: the password is checked
        throttle.succeeded(reservation)
        assert throttle.failures([f"account:{KA}"]) == {f"account:{KA}": 0}
        assert _wait(throttle, account=KA, source=SCHOOL) == 0.0

    def test_a_quiet_day_forgets_old_failures(self, throttle: SignInThrottle, clock: Clock) -> None:
        """Failures older than a day no longer count."""
        _fail(throttle, clock, 6)
        clock.advance(DEFAULT_POLICIES["account"].forget_after_s + 1)
        assert _wait(throttle, account=KA, source=ATTACKER) == 0.0


class TestLanes:
    def test_guesses_at_one_account_do_not_delay_another_from_elsewhere(
            self, throttle: SignInThrottle, clock: Clock) -> None:
        """The account lane is per account: the deputy, from the school, is not slowed by guesses at the Key Adult."""
        _fail(throttle, clock, 8)
        assert _wait(throttle, account=KA, source=ELSEWHERE) > 60  # the account itself is slowed, from anywhere
        assert _wait(throttle, account=DEPUTY, source=SCHOOL) == 0.0

    def test_one_source_spraying_many_accounts_is_slowed_for_every_account(
            self, throttle: SignInThrottle, clock: Clock) -> None:
        """The source lane counts failures for any id: a spray from one address slows that address down."""
        for n in range(12):
            _fail(throttle, clock, 1, account=f"made-up-{n}")
        assert _wait(throttle, account="made-up-new", source=ATTACKER) >= DEFAULT_POLICIES["source"].delay(12) > 60
        assert _wait(throttle, account="made-up-new", source=ELSEWHERE) == 0.0

    def test_signing_in_to_ones_own_account_does_not_reset_the_source(
            self, throttle: SignInThrottle, clock: Clock) -> None:
        """A success takes back only its own reserved failure of the source lane."""
        for n in range(8):
            _fail(throttle, clock, 1, account=f"someone-{n}")
        clock.advance(DEFAULT_POLICIES["source"].delay(8))
        throttle.succeeded(throttle.reserve(account="attackers-own", source=ATTACKER))
        assert throttle.failures([source_lane(ATTACKER)]) == {source_lane(ATTACKER): 8}

    def test_an_ipv6_source_counts_by_its_64(self, throttle: SignInThrottle, clock: Clock) -> None:
        """Rotating through one host's /64 is one source."""
        assert source_lane("2001:db8:1:2::1") == source_lane("2001:db8:1:2:ffff::9") != source_lane("2001:db8:1:3::1")
        assert source_lane("::ffff:192.0.2.44") == source_lane("192.0.2.44")


class TestNoLockoutByAThirdParty:
    def test_a_known_browser_signs_in_at_once_while_others_hammer_the_account(
            self, throttle: SignInThrottle, clock: Clock) -> None:
        """Guesses from other addresses fill the account's lane; the Key Adult's own browser has a lane of its own."""
        for source in (ATTACKER, ELSEWHERE, "203.0.113.99"):
            _fail(throttle, clock, 6, source=source)
        assert _wait(throttle, account=KA, source=SCHOOL) > 60  # a stranger's browser waits
        assert _wait(throttle, account=KA, source=SCHOOL, device="dev-of-the-key-adult") == 0.0
        assert _wait(throttle, account=KA, source=ATTACKER, device="dev-of-the-key-adult") == 0.0

    def test_a_known_browser_is_still_slowed_by_its_own_failures(self, throttle: SignInThrottle, clock: Clock) -> None:
        """The device lane grows like any other: a stolen device cookie buys no free guesses."""
        for _ in range(2):  # two wrong passwords from the known browser
            throttle.reserve(account=KA, source=SCHOOL, device="dev-1")
        assert _wait(throttle, account=KA, source=SCHOOL, device="dev-1") == pytest.approx(1.0)
        assert _wait(throttle, account=KA, source=SCHOOL, device="dev-2") == 0.0


class TestAtomicReservation:
    def test_of_forty_simultaneous_guesses_only_two_are_admitted(self, tmp_path: Path, clock: Clock) -> None:
        """Two "processes" (throttles on one file), twenty threads each: two guesses are checked, 38 refused unchecked.

        The first is the free typing mistake; the second closes the account's lane before either is hashed.
        """
        path = tmp_path / "throttle.sqlite"
        processes = [SignInThrottle(path, clock=clock), SignInThrottle(path, clock=clock)]
        start = threading.Barrier(40)
        admitted: list[int] = []
        refused: list[int] = []

        def guess(n: int) -> None:
            start.wait()
            try:
                processes[n % 2].reserve(account=KA, source=ATTACKER)
                admitted.append(n)
            except Throttled:
                refused.append(n)

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(admitted) == 2
        assert len(refused) == 38

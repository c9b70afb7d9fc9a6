"""The router's readiness and lag from its offsets, and its event-loop beat, without a broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaException
from prometheus_client import REGISTRY

from safebus.health import WorkerHealth
from safebus.processors.router_health import Offsets, Partition, RouterProgress, beat_forever, check_progress

A0, A1, B0 = ("t.police-a", 0), ("t.police-a", 1), ("t.police-b", 0)


@dataclass
class _Offsets:
    end: Mapping[Partition, int]
    position: Mapping[Partition, int]


@dataclass
class _Reader:
    """Answers what the broker would, from the `answers` given in order (the last one repeats)."""

    answers: list[Offsets | Exception]
    asked: list[list[Partition]] = field(default_factory=list)

    def read(self, partitions: Sequence[Partition]) -> Offsets:
        self.asked.append(list(partitions))
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class TestProgress:
    """Caught up means: every partition held has committed past what it held when first seen."""

    def test_nothing_held_is_not_ready(self) -> None:
        caught_up, lag = RouterProgress().observe([], _Offsets({}, {}))
        assert (caught_up, lag) == (False, {})

    def test_the_first_end_offset_seen_is_the_target_and_records_arriving_later_do_not_move_it(self) -> None:
        progress = RouterProgress()
        assert progress.observe([A0], _Offsets({A0: 10}, {A0: 4})) == (False, {"t.police-a": 6})
        # 20 records more arrived, the router has routed past the 10 that were there at start.
        assert progress.observe([A0], _Offsets({A0: 30}, {A0: 12})) == (True, {"t.police-a": 18})

    def test_every_partition_held_must_be_caught_up_and_lag_is_summed_per_topic(self) -> None:
        progress = RouterProgress()
        caught_up, lag = progress.observe([A0, A1, B0], _Offsets({A0: 5, A1: 7, B0: 0}, {A0: 5, A1: 3, B0: 0}))
        assert caught_up is False
        assert lag == {"t.police-a": 4, "t.police-b": 0}
        caught_up, _ = progress.observe([A0, A1, B0], _Offsets({A0: 5, A1: 7, B0: 0}, {A0: 5, A1: 7, B0: 0}))
        assert caught_up is True

    def test_a_partition_the_broker_did_not_answer_for_is_not_known_to_be_caught_up(self) -> None:
        caught_up, _ = RouterProgress().observe([A0, A1], _Offsets({A0: 1, A1: 1}, {A0: 1}))
        assert caught_up is False

    def test_a_partition_given_back_after_a_rebalance_keeps_its_first_target(self) -> None:
        progress = RouterProgress()
        progress.observe([A0], _Offsets({A0: 10}, {A0: 0}))
        progress.observe([A1], _Offsets({A1: 0}, {A1: 0}))
        assert progress.observe([A0], _Offsets({A0: 50}, {A0: 9}))[0] is False
        assert progress.observe([A0], _Offsets({A0: 50}, {A0: 10}))[0] is True


class TestCheck:
    """One check on the event loop: offsets read in an executor, lag set, readiness marked."""

    def test_ready_once_caught_up_and_lag_reported_per_topic(self) -> None:
        health, progress = WorkerHealth("router"), RouterProgress()
        reader = _Reader([_Offsets({A0: 3, B0: 2}, {A0: 1, B0: 2}), _Offsets({A0: 3, B0: 2}, {A0: 3, B0: 2})])
        assert asyncio.run(check_progress(health, progress, reader, [B0, A0])) is False
        assert health.ready() is False
        assert REGISTRY.get_sample_value("safebus_consumer_lag", {"topic": "t.police-a"}) == 2
        assert asyncio.run(check_progress(health, progress, reader, [A0, B0])) is True
        assert health.ready() is True
        assert REGISTRY.get_sample_value("safebus_consumer_lag", {"topic": "t.police-a"}) == 0
        assert reader.asked == [[A0, B0], [A0, B0]]

    def test_without_partitions_the_broker_is_not_asked(self) -> None:
        reader = _Reader([_Offsets({}, {})])
        assert asyncio.run(check_progress(WorkerHealth("router"), RouterProgress(), reader, [])) is False
        assert reader.asked == []

    @pytest.mark.parametrize("failure", [KafkaException("broker down"), TimeoutError(), ValueError("a bug")])
    def test_a_failed_read_leaves_the_router_not_ready_and_never_raises_into_faust(self, failure: Exception) -> None:
        health = WorkerHealth("router")
        reader = _Reader([failure])
        assert asyncio.run(check_progress(health, RouterProgress(), reader, [A0])) is False
        assert health.ready() is False

    def test_a_slow_broker_is_abandoned_after_the_timeout(self) -> None:
        class Slow:
            def read(self, partitions: Sequence[Partition]) -> Offsets:
                time.sleep(0.5)
                return _Offsets({A0: 0}, {A0: 0})

        health = WorkerHealth("router")
        started = time.monotonic()
        assert asyncio.run(check_progress(health, RouterProgress(), Slow(), [A0], timeout_s=0.05)) is False
        assert time.monotonic() - started < 2
        assert health.ready() is False


def test_the_beat_keeps_a_router_live_while_its_loop_comes_round() -> None:
    """A loop that runs the beat task is live past the stall time; one that stops running it is not."""
    now = [0.0]
    health = WorkerHealth("router", stall_after_s=5, clock=lambda: now[0])

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(beat_forever(health, every_s=0.01))
        for _ in range(10):
            now[0] += 1.0  # ten seconds pass, a beat in each
            await asyncio.sleep(0.03)
        task.cancel()

    asyncio.run(run_for_a_while())
    assert health.live()
    now[0] += 6.0  # the loop no longer runs the beat
    assert not health.live()

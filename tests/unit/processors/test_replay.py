"""Replay defence: an event id is routed once, redeliveries are safe, and stale or future events are refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from safebus.app.wiring import Settings, build_handler, build_police_publisher
from safebus.processors.replay import ClockWindow, ReplayGuard, Sighting
from safebus.producers.synthetic import IncidentFactory
from safebus.records import DLQ_DETAIL, DLQ_REASON, DLQ_STAGE, Origin, Output
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership


def _settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames(prefix="t"))


def _sealed(partnership: Partnership, factory: IncidentFactory, *, at: datetime = FIXED_NOW) -> Output:
    return build_police_publisher(_settings(partnership), clock=lambda: at).seal_incident(factory.incident("schools"))


def _headers(outputs: list[Output]) -> list[dict[str, str]]:
    return [{k: v.decode() for k, v in o.headers} for o in outputs]


def test_a_redelivered_record_is_processed_again_with_identical_outputs(
    partnership: Partnership, factory: IncidentFactory
) -> None:
    """After a crash the same record comes back from the same offset: it is routed again, not refused."""
    handler = build_handler(_settings(partnership), clock=lambda: FIXED_NOW)
    record = _sealed(partnership, factory)
    origin = Origin(topic=record.topic, partition=2, offset=40)
    first, again = handler.handle(record.value, origin), handler.handle(record.value, origin)
    assert [(o.topic, o.key) for o in first] == [(o.topic, o.key) for o in again]
    assert not any(DLQ_REASON in h for h in _headers(again))


def test_the_same_event_in_another_record_is_dropped_as_a_duplicate(
    partnership: Partnership, factory: IncidentFactory
) -> None:
    """A replayed copy (a new offset) is dead-lettered with where the original was seen, and routes nothing."""
    handler = build_handler(_settings(partnership), clock=lambda: FIXED_NOW)
    record = _sealed(partnership, factory)
    handler.handle(record.value, Origin(topic=record.topic, partition=2, offset=40))
    [dropped] = handler.handle(record.value, Origin(topic=record.topic, partition=2, offset=97))
    [headers] = _headers([dropped])
    assert (headers[DLQ_REASON], headers[DLQ_STAGE]) == ("duplicate-event", "replay")
    assert headers[DLQ_DETAIL] == f"first seen at {record.topic}[2]@40"


def test_the_seen_set_survives_a_restart(tmp_path: Path) -> None:
    """A router restarted on the same state still knows what it has routed."""
    origin = Origin(topic="t", partition=0, offset=1)
    assert ReplayGuard(tmp_path / "seen.sqlite").sight("e1", origin)[0] is Sighting.NEW
    assert ReplayGuard(tmp_path / "seen.sqlite").sight("e1", origin)[0] is Sighting.REDELIVERY
    assert ReplayGuard(tmp_path / "seen.sqlite").sight("e1", Origin(topic="t", partition=0, offset=2))[0] is (
        Sighting.DUPLICATE)


@pytest.mark.parametrize(
    ("sealed_at", "refused"),
    [
        (FIXED_NOW - timedelta(days=8), True),
        (FIXED_NOW - timedelta(days=6), False),
        (FIXED_NOW + timedelta(minutes=4), False),
        (FIXED_NOW + timedelta(minutes=6), True),
    ],
)
def test_events_outside_the_clock_window_are_refused(
    partnership: Partnership, factory: IncidentFactory, sealed_at: datetime, refused: bool
) -> None:
    """Envelopes sealed more than 7 days ago, or more than 5 minutes in the future, are dead-lettered."""
    handler = build_handler(_settings(partnership), clock=lambda: FIXED_NOW)
    record = _sealed(partnership, factory, at=sealed_at)
    reasons = [h.get(DLQ_REASON) for h in _headers(handler.handle(record.value, Origin(topic=record.topic,
                                                                                        partition=0, offset=1)))]
    assert (reasons == ["outside-clock-window"]) is refused


def test_the_window_is_configurable() -> None:
    """Partnerships set their own tolerance."""
    window = ClockWindow(max_age=timedelta(hours=1), max_skew=timedelta(0))
    assert window.admits(FIXED_NOW - timedelta(minutes=59), FIXED_NOW)
    assert not window.admits(FIXED_NOW - timedelta(minutes=61), FIXED_NOW)
    assert not window.admits(FIXED_NOW + timedelta(seconds=1), FIXED_NOW)

"""A standby monitor's own reading positions: it never skips a fact, even across restarts or a damaged file."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING

from safebus.consumers.encompass.audit_follower import Positions
from safebus.records import Record

TOPIC = "t.audit.decisions"


def _record(partition: int, offset: int, topic: str = TOPIC) -> Record:
    return Record(topic=topic, partition=partition, offset=offset, key=None, value=b"{}", headers={})


def test_a_restarted_standby_reads_on_from_the_record_after_the_last_it_observed(tmp_path: Path) -> None:
    positions = Positions(tmp_path / "m.follow.json", TOPIC)
    assert positions.next_offset(0) == OFFSET_BEGINNING, "never read: from the start, so nothing is skipped"
    positions.advance([_record(0, 4), _record(2, 9), _record(0, 7)])
    positions.advance([_record(0, 5)])  # an older batch observed again moves nothing back
    again = Positions(tmp_path / "m.follow.json", TOPIC)
    assert (again.next_offset(0), again.next_offset(1), again.next_offset(2)) == (8, OFFSET_BEGINNING, 10)


def test_records_of_another_topic_move_nothing(tmp_path: Path) -> None:
    positions = Positions(tmp_path / "m.follow.json", TOPIC)
    positions.advance([_record(0, 40, topic="t.deadletter")])
    assert not (tmp_path / "m.follow.json").exists()
    assert positions.next_offset(0) == OFFSET_BEGINNING


def test_a_damaged_or_foreign_positions_file_means_reading_from_the_start(tmp_path: Path) -> None:
    """Reading again is harmless (observing a fact twice changes nothing); skipping would lose deadlines."""
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json", encoding="utf-8")
    assert Positions(damaged, TOPIC).next_offset(0) == OFFSET_BEGINNING
    foreign = tmp_path / "foreign.json"
    Positions(foreign, "other.audit.decisions").advance([_record(0, 3, topic="other.audit.decisions")])
    assert Positions(foreign, TOPIC).next_offset(0) == OFFSET_BEGINNING

"""
Operation Encompass deadlines under a controllable clock: who is told, and exactly when.

Hollowmere Primary (URN 900101) starts at 08:55 (sample calendars); the
deputies are alerted 45 minutes before, the education safeguarding officer at
the deadline, and an alert that waited over a weekend is surfaced again 75
minutes before the first session back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.encompass.on_time import on_time_report, report_rows, transfer_report
from safebus.schemas.audit import EscalationStep

LONDON_WINTER = UTC  # November: UK time is UTC


def _decision(nid: str, *, at: datetime, recipient: str | None = "school-900101", kind: str = "school",
              outcome: str = "shared", agreement: str = "operation-encompass") -> dict[str, Any]:
    return {"event_type": "audit.sharing-decision", "agreement_id": agreement, "outcome": outcome,
            "recipient": recipient, "recipient_kind": kind, "output_id": nid, "recorded_at": at.isoformat(),
            "subjects": [f"subj_{abs(hash(nid)) % 16**32:032x}"]}


def _delivered(nid: str, at: datetime) -> dict[str, Any]:
    return {"event_type": "audit.delivered", "output_id": nid, "delivered_at": at.isoformat()}


def _acknowledged(nid: str, at: datetime) -> dict[str, Any]:
    return {"event_type": "audit.acknowledged", "notification_id": nid, "acknowledged_at": at.isoformat(),
            "staff_id": "KA-900101-1"}


@pytest.fixture
def monitor(tmp_path: Path) -> EncompassMonitor:
    """A monitor over the sample calendars and the packaged policy."""
    return EncompassMonitor(tmp_path / "monitor.sqlite", calendars=sample_calendars(), policy=load_policy(),
                            urn_of={"school-900101": "900101", "school-900102": "900102"})


def _steps(monitor: EncompassMonitor, now: datetime) -> list[tuple[str, EscalationStep]]:
    return [(s.tracked.notification_id, s.step) for s in monitor.due_steps(now)]


def test_a_school_night_incident_escalates_to_deputies_then_the_officer(monitor: EncompassMonitor) -> None:
    """Wednesday 21:30 → due Thursday 08:55; deputies at 08:10; the officer at 08:55; nothing before."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("n1", at=recorded), _delivered("n1", recorded + timedelta(seconds=3))])
    tracked = monitor.tracked("n1")
    assert tracked is not None
    assert tracked.due_by == datetime(2026, 11, 19, 8, 55, tzinfo=UTC)
    assert _steps(monitor, datetime(2026, 11, 19, 8, 9, tzinfo=UTC)) == []
    assert _steps(monitor, datetime(2026, 11, 19, 8, 10, tzinfo=UTC)) == [("n1", EscalationStep.DEPUTIES)]
    [deputies] = monitor.due_steps(datetime(2026, 11, 19, 8, 10, tzinfo=UTC))
    monitor.mark_fired(deputies, at=datetime(2026, 11, 19, 8, 10, tzinfo=UTC))
    assert _steps(monitor, datetime(2026, 11, 19, 8, 54, tzinfo=UTC)) == []  # fired once, never again
    assert _steps(monitor, datetime(2026, 11, 19, 8, 55, tzinfo=UTC)) == [
        ("n1", EscalationStep.EDUCATION_SAFEGUARDING_OFFICER)]


def test_acknowledgement_stops_every_later_step(monitor: EncompassMonitor) -> None:
    """A Key Adult who reads the alert at 07:50 spares the deputies and the officer."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("n1", at=recorded), _delivered("n1", recorded),
                     _acknowledged("n1", datetime(2026, 11, 19, 7, 50, tzinfo=UTC))])
    assert _steps(monitor, datetime(2026, 11, 20, 12, 0, tzinfo=UTC)) == []
    tracked = monitor.tracked("n1")
    assert tracked is not None
    assert tracked.acknowledged_on_time


def test_a_friday_night_alert_is_surfaced_again_on_monday_morning(monitor: EncompassMonitor) -> None:
    """Friday 22:00 → delivered at once, surfaced again Monday 07:40, deputies 08:10, officer 08:55."""
    recorded = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
    monitor.observe([_decision("n2", at=recorded), _delivered("n2", recorded + timedelta(seconds=2))])
    assert _steps(monitor, datetime(2026, 11, 23, 7, 39, tzinfo=UTC)) == []
    assert _steps(monitor, datetime(2026, 11, 23, 7, 40, tzinfo=UTC)) == [("n2", EscalationStep.RESURFACED)]
    assert [s for _, s in _steps(monitor, datetime(2026, 11, 23, 8, 55, tzinfo=UTC))] == [
        EscalationStep.RESURFACED, EscalationStep.DEPUTIES, EscalationStep.EDUCATION_SAFEGUARDING_OFFICER]


def test_a_child_with_no_known_setting_goes_to_the_mash_desk_with_the_same_deadline(
        monitor: EncompassMonitor) -> None:
    """The deferral is tracked against the partnership calendar and recorded as sent to the MASH desk."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("n3", at=recorded, recipient="northdale-childrens-services",
                               kind="childrens-services", outcome="deferred")])
    tracked = monitor.tracked("n3")
    assert tracked is not None
    assert tracked.desk == "mash"
    assert tracked.due_by == datetime(2026, 11, 19, 8, 45, tzinfo=UTC)  # partnership default start
    [step] = monitor.due_steps(recorded)
    assert step.step is EscalationStep.MASH_EDUCATION_DESK
    fact = monitor.step_fact(step, at=recorded, notified=("northdale-mash-education-desk",))
    again = monitor.step_fact(step, at=recorded + timedelta(minutes=5), notified=())
    assert fact.event_id == again.event_id  # the same step is one fact, however often it is recorded


def test_other_agreements_and_withheld_decisions_are_not_tracked(monitor: EncompassMonitor) -> None:
    """Only Operation Encompass notifications have a next-school-day deadline."""
    at = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("x1", at=at, agreement="childrens-services-referral"),
                     _decision("x2", at=at, outcome="withheld")])
    assert monitor.all() == []


def test_the_on_time_report_counts_per_setting_and_for_the_partnership(monitor: EncompassMonitor) -> None:
    """Sent, delivered, acknowledged before due_by, median time to acknowledge, escalations, unresolved."""
    night = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([
        _decision("a", at=night), _delivered("a", night), _acknowledged("a", night + timedelta(minutes=30)),
        _decision("b", at=night), _delivered("b", night),
        _decision("c", at=night, recipient="school-900102"), _delivered("c", night),
    ])
    for step in monitor.due_steps(datetime(2026, 11, 19, 9, 0, tzinfo=UTC)):
        monitor.mark_fired(step, at=step.due_at)
    monitor.observe([_acknowledged("b", night + timedelta(hours=12))])  # 09:30: after both steps
    lines = {line.setting_urn: line for line in on_time_report(monitor, now=datetime(2026, 11, 19, 12, 0,
                                                                                       tzinfo=UTC))}
    hollowmere, larkspur, partnership = lines["900101"], lines["900102"], lines[None]
    assert (hollowmere.sent, hollowmere.acknowledged, hollowmere.acknowledged_before_due) == (2, 2, 1)
    assert hollowmere.median_minutes_to_acknowledge == pytest.approx((30 + 720) / 2)
    assert hollowmere.escalations == 2  # b: deputies and officer (acknowledged after both)
    assert (larkspur.sent, larkspur.acknowledged, larkspur.unresolved, larkspur.escalations) == (1, 0, 1, 2)
    assert (partnership.sent, partnership.acknowledged_before_due) == (3, 1)
    assert partnership.on_time_rate == pytest.approx(1 / 3)
    assert report_rows([partnership])[0]["on_time_rate"] == "0.333"


def test_a_delivery_read_before_its_decision_still_counts(monitor: EncompassMonitor) -> None:
    """The audit topic has several partitions: a delivery or acknowledgement may be read before the decision."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_delivered("n9", recorded + timedelta(seconds=2)),
                     _acknowledged("n9", recorded + timedelta(minutes=5))])
    monitor.observe([_decision("n9", at=recorded)])
    tracked = monitor.tracked("n9")
    assert tracked is not None
    assert tracked.delivered_at == recorded + timedelta(seconds=2)
    assert tracked.acknowledged_on_time
    assert _steps(monitor, datetime(2026, 11, 20, tzinfo=UTC)) == []


def _moved(tid: str, *, at: datetime, subject_of: str, previous: str = "900101") -> dict[str, Any]:
    decision = _decision(subject_of, at=at)
    return {"event_type": "audit.enrolment-moved", "event_id": tid, "previous_setting_urn": previous,
            "new_setting_urn": "900103", "effective_date": at.date().isoformat(), "recorded_at": at.isoformat(),
            "subjects": decision["subjects"]}


def test_a_move_prompts_the_old_setting_and_escalates_an_unsent_file_after_five_school_days(
        monitor: EncompassMonitor) -> None:
    """Move on Friday 20 Nov: prompt at once; the file is due by the end of Friday 27 Nov; then the officer."""
    night = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("alert-1", at=night), _acknowledged("alert-1", night)])
    moved_at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    monitor.observe([_moved("move-1", at=moved_at, subject_of="alert-1")])
    [transfer] = monitor.pending_transfers("900101")
    assert transfer.due_by == datetime(2026, 11, 28, 0, 0, tzinfo=UTC)  # end of the 5th school day after Friday
    assert _steps(monitor, moved_at) == [("move-1", EscalationStep.FILE_TRANSFER_PROMPTED)]
    for step in monitor.due_steps(moved_at):
        monitor.mark_fired(step, at=moved_at)
    assert _steps(monitor, datetime(2026, 11, 27, 23, 59, tzinfo=UTC)) == []
    assert _steps(monitor, datetime(2026, 11, 28, 0, 0, tzinfo=UTC)) == [
        ("move-1", EscalationStep.FILE_TRANSFER_OVERDUE)]


def test_a_confirmed_transfer_is_closed_and_counted(monitor: EncompassMonitor) -> None:
    """The Key Adult's confirmation stops the escalation and the report counts it in time."""
    night = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("alert-2", at=night), _moved("move-2", at=night, subject_of="alert-2"),
                     {"event_type": "audit.file-transfer-confirmed", "transfer_id": "move-2", "staff_id": "900101-ka",
                      "confirmed_at": (night + timedelta(days=2)).isoformat()}])
    assert monitor.pending_transfers("900101") == []
    assert [s for s in _steps(monitor, night + timedelta(days=30)) if s[0] == "move-2"] == []
    line = transfer_report(monitor, now=night + timedelta(days=30))
    assert (line.due, line.confirmed_in_time, line.overdue_open) == (1, 1, 0)


def test_a_move_from_a_setting_without_encompass_history_starts_no_clock(monitor: EncompassMonitor) -> None:
    """Only the Encompass history the bus delivered is its business to see transferred."""
    at = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("alert-3", at=at), _moved("move-3", at=at, subject_of="alert-3", previous="900102")])
    assert monitor.pending_transfers("900102") == []


def test_every_tracked_notification_gets_one_deadline_fact(monitor: EncompassMonitor) -> None:
    """The monitor records each deadline it sets (with the calendar version), once, whatever happens next."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("n1", at=recorded), _decision("n1", at=recorded)])
    [fact] = monitor.new_deadlines(at=recorded)
    assert (fact.notification_id, fact.setting_urn, fact.desk) == ("n1", "900101", "setting")
    assert fact.due_by == datetime(2026, 11, 19, 8, 55, tzinfo=UTC)
    assert fact.calendar_version.startswith("sha256:")
    assert monitor.new_deadlines(at=recorded) == []
    monitor.observe([_decision("n1", at=recorded)])  # a redelivered decision is not a new deadline
    assert monitor.new_deadlines(at=recorded) == []

"""
Two clocks and no silent escalations (issue 12, bullets 3 and 5).

The school's clock: ``due_by`` is the setting's next session start after the
bus shares the alert.  The police's clock: the alert had to be shared before
the setting's next school day after the incident; when it was not, the
deadline fact and the on-time report say by how much.  An escalation step
with nobody to tell is recorded as such and the next step is taken at once;
a home-educated child's notification reaches the LA's elective home
education officer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import EscalationNotices
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.encompass.on_time import on_time_report, report_rows
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdults
from safebus.schemas.audit import EscalationStep
from safebus.schemas.encompass import KeyAdultRole
from tests.mail_relay import Recorder, SendingNotifier

SETTING = EducationSetting(urn="900101", agency_id="school-900101", name="Hollowmere Primary School")
INCIDENT = datetime(2026, 11, 10, 20, 0, tzinfo=UTC)  # a Tuesday evening
SHARED = datetime(2026, 12, 3, 6, 30, tzinfo=UTC)  # the police passed it on 23 days later, before school


def _decision(nid: str, *, at: datetime, incident_at: datetime | None, kind: str = "school",
              recipient: str = "school-900101", clause: str = "4.1 notify-setting") -> dict[str, Any]:
    fact = {"event_type": "audit.sharing-decision", "agreement_id": "operation-encompass", "outcome": "shared",
            "recipient": recipient, "recipient_kind": kind, "output_id": nid, "recorded_at": at.isoformat(),
            "clause": clause, "subjects": ["subj_0123456789abcdef0123456789abcdef"]}
    if incident_at is not None:
        fact["incident_at"] = incident_at.isoformat()
    return fact


@pytest.fixture
def monitor(tmp_path: Path) -> EncompassMonitor:
    """A monitor over the sample calendars and the packaged policy."""
    return EncompassMonitor(tmp_path / "monitor.sqlite", calendars=sample_calendars(), policy=load_policy(),
                            urn_of={"school-900101": "900101"})


def test_a_late_share_is_due_for_the_school_as_usual_and_recorded_late_for_the_police(
        monitor: EncompassMonitor) -> None:
    """Incident on 10 November, shared on 3 December: the school has until 08:55 that day; the police were late."""
    monitor.observe([_decision("late", at=SHARED, incident_at=INCIDENT),
                     _decision("prompt", at=INCIDENT + timedelta(hours=1), incident_at=INCIDENT)])
    facts = {f.notification_id: f for f in monitor.new_deadlines(at=SHARED)}

    late = facts["late"]
    assert late.due_by == datetime(2026, 12, 3, 8, 55, tzinfo=UTC)  # the school's clock: from the share
    assert late.police_due_by == datetime(2026, 11, 11, 8, 55, tzinfo=UTC)  # next school day after the incident
    assert late.shared_at == SHARED
    assert late.shared_late_minutes == (SHARED - datetime(2026, 11, 11, 8, 55, tzinfo=UTC)) // timedelta(minutes=1)
    assert facts["prompt"].shared_late_minutes == 0

    [setting, partnership] = report_rows(on_time_report(monitor, now=SHARED))
    assert (partnership["shared_on_time"], partnership["shared_late"]) == ("1", "1")
    assert setting["median_minutes_shared_late"] == str(late.shared_late_minutes)


def test_a_decision_without_an_incident_time_leaves_the_police_clock_unknown(monitor: EncompassMonitor) -> None:
    """Facts written before 1.1.0 carry no incident time: nothing is claimed about the police."""
    monitor.observe([_decision("old", at=SHARED, incident_at=None)])
    [fact] = monitor.new_deadlines(at=SHARED)
    assert fact.police_due_by is None
    assert fact.shared_late_minutes is None
    assert report_rows(on_time_report(monitor, now=SHARED))[-1]["shared_late"] == "0"


def _notices(tmp_path: Path, port: int, monitor: EncompassMonitor) -> EscalationNotices:
    """Notices for a setting that has a Key Adult but no deputies."""
    key_adults = KeyAdults(tmp_path / "key-adults.json")
    key_adults.add("900101-ka", setting_urn=SETTING.urn, role=KeyAdultRole.KEY_ADULT, display_name="Key Adult",
                   email="ka@school-900101.example", password="synthetic-demo-password")
    notifier = SendingNotifier(tmp_path, port)
    return EscalationNotices(notifier=notifier, key_adults=key_adults, settings={SETTING.urn: SETTING},
                             monitor=monitor)


def test_a_setting_with_no_deputies_goes_straight_to_the_officer_and_says_so(
    tmp_path: Path, monitor: EncompassMonitor, smtp: tuple[Recorder, int],
) -> None:
    """At 08:10 the deputies step finds nobody: recorded as such, and the LA officer is told at 08:10, not 08:55."""
    recorder, port = smtp
    notices = _notices(tmp_path, port, monitor)
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("n1", at=recorded, incident_at=recorded - timedelta(hours=1))])
    at = datetime(2026, 11, 19, 8, 10, tzinfo=UTC)

    [deputies] = monitor.due_steps(at)
    assert deputies.step is EscalationStep.DEPUTIES
    notified = notices.notify(deputies)
    assert notified == ()
    fact = monitor.step_fact(deputies, at=at, notified=notified)
    assert fact.nobody_to_notify
    assert fact.moved_to is EscalationStep.EDUCATION_SAFEGUARDING_OFFICER
    monitor.mark_fired(deputies, at=at, reached_nobody=fact.nobody_to_notify)

    [officer] = monitor.due_steps(at)
    assert officer.step is EscalationStep.EDUCATION_SAFEGUARDING_OFFICER
    assert notices.notify(officer) == ("northdale-la-education-safeguarding",)
    assert [r.rcpt_tos for r in recorder.received] == [["education.safeguarding@northdale-la.example"]]
    body = recorder.received[0].message.get_content()
    assert "Nobody at Hollowmere Primary School (URN 900101) could be told" in body
    assert "Thursday 19 November 2026, 08:55" in body


def test_the_bring_forward_survives_a_restart_from_the_audit_facts(tmp_path: Path) -> None:
    """A new monitor that reads the 'nobody to notify' fact back also brings the officer forward."""
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    at = datetime(2026, 11, 19, 8, 10, tzinfo=UTC)
    first = EncompassMonitor(tmp_path / "a.sqlite", calendars=sample_calendars(), policy=load_policy(),
                             urn_of={"school-900101": "900101"})
    first.observe([_decision("n1", at=recorded, incident_at=None)])
    [deputies] = first.due_steps(at)
    fact = first.step_fact(deputies, at=at, notified=())

    again = EncompassMonitor(tmp_path / "b.sqlite", calendars=sample_calendars(), policy=load_policy(),
                             urn_of={"school-900101": "900101"})
    again.observe([_decision("n1", at=recorded, incident_at=None), fact.model_dump(mode="json")])
    assert [s.step for s in again.due_steps(at)] == [EscalationStep.EDUCATION_SAFEGUARDING_OFFICER]


def test_a_home_educated_child_is_notified_to_the_elective_home_education_officer(
    tmp_path: Path, monitor: EncompassMonitor, smtp: tuple[Recorder, int],
) -> None:
    """Clause 4.2 shares with children's services; the monitor e-mails the EHE officer at once, no personal data."""
    recorder, port = smtp
    notices = _notices(tmp_path, port, monitor)
    recorded = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
    monitor.observe([_decision("ehe", at=recorded, incident_at=recorded - timedelta(hours=1),
                               kind="childrens-services", recipient="northdale-childrens-services",
                               clause="4.2 home-educated")])
    [step] = monitor.due_steps(recorded)
    assert step.step is EscalationStep.ELECTIVE_HOME_EDUCATION_OFFICER
    assert notices.notify(step) == ("northdale-la-elective-home-education",)
    [mail] = recorder.received
    assert mail.rcpt_tos == ["ehe@northdale-la.example"]
    assert b"subj_" not in mail.raw

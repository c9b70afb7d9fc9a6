"""
Escalation notices reach the right people over a real SMTP server on loopback, with no personal data.

Deputies hear 45 minutes before the deadline; the local authority's education
safeguarding officer at the deadline; the MASH education desk when the setting
is unknown.  None of them learns from the e-mail who the child is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import OVERDUE_SUBJECT, EscalationNotices
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdults, ensure_synthetic_key_adults
from safebus.schemas.audit import EscalationStep
from tests.mail_relay import Recorder, SendingNotifier

SETTING = EducationSetting(urn="900101", agency_id="school-900101", name="Hollowmere Primary School")
RECORDED = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
TOKEN = "subj_0123456789abcdef0123456789abcdef"


@pytest.fixture
def monitor(tmp_path: Path) -> EncompassMonitor:
    """A monitor tracking one Hollowmere notification and one deferral to the MASH desk."""
    monitor = EncompassMonitor(tmp_path / "m.sqlite", calendars=sample_calendars(), policy=load_policy(),
                               urn_of={"school-900101": "900101"})
    common = {"event_type": "audit.sharing-decision", "agreement_id": "operation-encompass",
              "recorded_at": RECORDED.isoformat(), "subjects": [TOKEN]}
    monitor.observe([
        {**common, "outcome": "shared", "recipient": "school-900101", "recipient_kind": "school", "output_id": "n1"},
        {**common, "outcome": "deferred", "recipient": "northdale-childrens-services",
         "recipient_kind": "childrens-services", "output_id": "n2"},
        {"event_type": "audit.delivered", "output_id": "n1", "delivered_at": RECORDED.isoformat()},
    ])
    return monitor


def _notices(tmp_path: Path, port: int, monitor: EncompassMonitor) -> EscalationNotices:
    key_adults = KeyAdults(tmp_path / "key-adults.json")
    ensure_synthetic_key_adults(key_adults, [SETTING], password="synthetic-demo-password")
    notifier = SendingNotifier(tmp_path, port)
    return EscalationNotices(notifier=notifier, key_adults=key_adults, settings={SETTING.urn: SETTING},
                             monitor=monitor)


def test_deputies_then_the_officer_then_the_mash_desk_are_told(
    tmp_path: Path, monitor: EncompassMonitor, smtp: tuple[Recorder, int],
) -> None:
    """Each step e-mails exactly its people, and says nothing about the child."""
    recorder, port = smtp
    notices = _notices(tmp_path, port, monitor)
    steps = {s.step: s for s in monitor.due_steps(RECORDED + timedelta(days=1))}
    assert set(steps) == {EscalationStep.DEPUTIES, EscalationStep.EDUCATION_SAFEGUARDING_OFFICER,
                          EscalationStep.MASH_EDUCATION_DESK}

    assert notices.notify(steps[EscalationStep.DEPUTIES]) == ("900101-deputy",)
    assert notices.notify(steps[EscalationStep.EDUCATION_SAFEGUARDING_OFFICER]) == (
        "northdale-la-education-safeguarding",)
    assert notices.notify(steps[EscalationStep.MASH_EDUCATION_DESK]) == ("northdale-mash-education-desk",)

    assert [r.rcpt_tos for r in recorder.received] == [
        ["deputy-dsl@school-900101.example"], ["education.safeguarding@northdale-la.example"],
        ["mash.education@northdale-cs.example"]]
    officer = recorder.received[1].message
    assert officer["Subject"] == OVERDUE_SUBJECT
    body = officer.get_content()
    assert "Hollowmere Primary School" in body
    assert "Thursday 19 November 2026, 08:55" in body  # the deadline, in UK time
    for received in recorder.received:
        assert TOKEN.encode() not in received.raw


def test_the_old_setting_is_asked_to_transfer_the_file_without_being_told_who_in_the_email(
    tmp_path: Path, monitor: EncompassMonitor, smtp: tuple[Recorder, int],
) -> None:
    """A move prompts the old setting's Key Adult and deputy; an unsent file goes to the officer."""
    recorder, port = smtp
    notices = _notices(tmp_path, port, monitor)
    moved_at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    monitor.observe([{"event_type": "audit.enrolment-moved", "event_id": "move-1", "previous_setting_urn": "900101",
                      "new_setting_urn": "900103", "effective_date": "2026-11-20", "recorded_at": moved_at.isoformat(),
                      "subjects": [TOKEN]}])
    steps = {s.step: s for s in monitor.due_steps(datetime(2026, 11, 28, tzinfo=UTC))
             if s.tracked.notification_id == "move-1"}
    assert notices.notify(steps[EscalationStep.FILE_TRANSFER_PROMPTED]) == ("900101-ka", "900101-deputy")
    assert notices.notify(steps[EscalationStep.FILE_TRANSFER_OVERDUE]) == ("northdale-la-education-safeguarding",)
    prompt = recorder.received[0].message.get_content()
    assert "by the end of Friday 27 November 2026" in prompt
    assert "/transfers" in prompt
    for received in recorder.received:
        assert TOKEN.encode() not in received.raw

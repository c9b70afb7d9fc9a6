"""The "an alert is waiting" e-mail, via the outbox to a loopback SMTP server: right people, no personal data."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from safebus.consumers.inbox.email_notice import SUBJECT
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdult
from safebus.schemas._base import event_metadata
from safebus.schemas.encompass import EncompassNotification, KeyAdultRole
from tests.conftest import FIXED_NOW
from tests.mail_relay import Recorder, SendingNotifier

HOLLOWMERE = EducationSetting(urn="900101", agency_id="school-900101", name="Hollowmere Primary School")
INBOX = "https://inbox.northdale.example"

NOTIFICATION = EncompassNotification(
    **event_metadata(EncompassNotification, producer="safebus-router", occurred_at=FIXED_NOW, recorded_at=FIXED_NOW),
    notification_id="5b1d9e0a-3c2f-5a7b-9d8e-1f0a2b3c4d5e", setting_urn="900101", child_first_name="Ivy",
    child_surname="Garside", child_date_of_birth=date(2016, 3, 4), police_reference="NDP-2026-000123",
    incident_at=FIXED_NOW - timedelta(hours=3), child_present=True,
)
"""The alert the notice is about; none of this may appear in the e-mail."""


def _staff(staff_id: str, role: KeyAdultRole, urn: str = "900101") -> KeyAdult:
    return KeyAdult(staff_id=staff_id, setting_urn=urn, role=role, display_name=f"Staff {staff_id}",
                    email=f"{staff_id}@school-{urn}.example", credential_version="v1")


KEY_ADULT = _staff("dsl", KeyAdultRole.KEY_ADULT)
DEPUTY = _staff("deputy-dsl", KeyAdultRole.DEPUTY)
OTHER_SCHOOL = _staff("dsl", KeyAdultRole.KEY_ADULT, urn="900105")


def _personal_data(n: EncompassNotification) -> list[str]:
    """Every way the child's details could be written into an e-mail."""
    dob = n.child_date_of_birth
    incident = n.incident_at
    return [
        n.child_first_name, n.child_surname, f"{n.child_first_name} {n.child_surname}",
        dob.isoformat(), dob.strftime("%d/%m/%Y"), f"{dob.day}/{dob.month}/{dob.year}", dob.strftime("%d-%m-%Y"),
        dob.strftime("%Y%m%d"), f"{dob.day} {dob:%B %Y}", f"{dob:%B} {dob.day}, {dob.year}", dob.strftime("%d %b %Y"),
        n.police_reference, n.police_reference.replace("-", ""), n.notification_id, n.event_id,
        incident.isoformat(), incident.strftime("%H:%M"), incident.strftime("%d/%m/%Y"),
    ]


def _notifier(folder: Path, port: int, **kwargs: Any) -> SendingNotifier:
    return SendingNotifier(folder, port, inbox=INBOX, **kwargs)


class TestWhoIsTold:
    def test_the_key_adult_and_deputy_each_get_their_own_notice(self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """One message per person at the setting, each addressed to that person only, with its id returned."""
        recorder, port = smtp
        ids = _notifier(tmp_path, port).notify(HOLLOWMERE, [KEY_ADULT, DEPUTY, OTHER_SCHOOL])
        assert len(ids) == 2
        assert [r.rcpt_tos for r in recorder.received] == [[KEY_ADULT.email], [DEPUTY.email]]
        assert [r.message["To"] for r in recorder.received] == [KEY_ADULT.email, DEPUTY.email]
        assert [r.message["Message-ID"] for r in recorder.received] == ids
        assert all(r.mail_from == "encompass-alerts@northdale.example" for r in recorder.received)

    def test_deputies_can_be_left_out(self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """A partnership that notifies only the Key Adult configures it so."""
        recorder, port = smtp
        _notifier(tmp_path, port, include_deputies=False).notify(HOLLOWMERE, [KEY_ADULT, DEPUTY])
        assert [r.rcpt_tos for r in recorder.received] == [[KEY_ADULT.email]]

    def test_another_settings_staff_are_never_told(self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """Staff of another school passed in by mistake get nothing; with nobody left, nothing is sent."""
        recorder, port = smtp
        assert _notifier(tmp_path, port).notify(HOLLOWMERE, [OTHER_SCHOOL]) == []
        assert recorder.received == []


class TestWhatItSays:
    def test_the_notice_says_an_alert_is_waiting_where_and_links_to_the_inbox(
            self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """The body names the setting and links to the inbox's start page."""
        recorder, port = smtp
        _notifier(tmp_path, port).notify(HOLLOWMERE, [KEY_ADULT])
        [received] = recorder.received
        body = received.message.get_content()
        assert "Operation Encompass alert is waiting" in body
        assert HOLLOWMERE.name in body
        assert f"{INBOX}/" in body.splitlines()
        assert received.message["Subject"] == SUBJECT
        assert received.message["Auto-Submitted"] == "auto-generated"

    def test_the_notice_carries_none_of_the_childs_personal_data(self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """Name, surname, date of birth (many formats), police reference, ids and incident time appear nowhere."""
        recorder, port = smtp
        _notifier(tmp_path, port).notify(HOLLOWMERE, [KEY_ADULT, DEPUTY])
        assert recorder.received
        for received in recorder.received:
            headers = "\n".join(f"{k}: {v}" for k, v in received.message.items())
            body = received.message.get_content()
            raw = received.raw.decode("utf-8", "replace")
            for secret in _personal_data(NOTIFICATION):
                assert secret.casefold() not in headers.casefold(), secret
                assert secret.casefold() not in body.casefold(), secret
                assert secret.casefold() not in raw.casefold(), secret

    def test_the_subject_does_not_name_the_setting(self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """Subjects show on lock screens; even the school's name stays out of it."""
        recorder, port = smtp
        _notifier(tmp_path, port).notify(HOLLOWMERE, [KEY_ADULT])
        assert "Hollowmere" not in str(recorder.received[0].message["Subject"])


class TestWhenItCannotBeSent:
    def test_a_refused_mailbox_does_not_stop_the_others_and_is_kept_as_refused(
            self, smtp: tuple[Recorder, int], tmp_path: Path
    ) -> None:
        """The deputy still hears; the Key Adult's notice is kept as refused (not retried blindly, not lost)."""
        recorder, port = smtp
        recorder.refuse.add(KEY_ADULT.email)
        notifier = _notifier(tmp_path, port)
        ids = notifier.notify(HOLLOWMERE, [KEY_ADULT, DEPUTY])
        assert len(ids) == 2
        assert [r.rcpt_tos for r in recorder.received] == [[DEPUTY.email]]
        counts = notifier.outbox.counts()
        assert (counts.sent, counts.refused, counts.pending) == (1, 1, 0)
        assert notifier.sending.send_due().sent == 0, "a refused message is not tried again"

"""
Operation Encompass delivery on a real broker: alert, e-mail notice, deadline, acknowledgement, report.

A police incident tonight becomes an alert in the school's inbox; the Key
Adult and deputy get an e-mail (from a real SMTP server on loopback) that says
an alert is waiting and nothing else; the deadline is the school's next session
start; the Key Adult's acknowledgement is a signed event on the bus and an
audit fact, and the on-time report counts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date

import pytest

from safebus.app.encompass_wiring import acknowledgement_publisher, open_monitor
from safebus.consumers.mail.outbox import MailOutbox
from safebus.schemas._base import event_metadata
from safebus.schemas.encompass import Acknowledger, EncompassAcknowledged, KeyAdultRole
from safebus.schemas.police import Child
from safebus.schemas.registry import Family
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for
from tests.mail_relay import LoopbackRelay, Received, Recorder

pytestmark = pytest.mark.kafka

CHILD = Child(first_name="Perpetua", surname="Quarrington", date_of_birth=date(2016, 9, 14), present=True,
              school_urn="900101")


@pytest.fixture(scope="module")
def relay() -> Iterator[LoopbackRelay]:
    """A real SMTP server on loopback that records what it receives, which a test may stop and start."""
    relay = LoopbackRelay()
    relay.start()
    saved = {k: os.environ.get(k) for k in ("SAFEBUS_SMTP", "SAFEBUS_DEMO_PASSWORD", "SAFEBUS_INBOX_URL")}
    os.environ.update({"SAFEBUS_SMTP": f"127.0.0.1:{relay.port}", "SAFEBUS_DEMO_PASSWORD": "synthetic-demo-password",
                       "SAFEBUS_INBOX_URL": "http://127.0.0.1:8080/"})
    try:
        yield relay
    finally:
        relay.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def mail(relay: LoopbackRelay) -> Recorder:
    """What the relay received."""
    return relay.recorder


@pytest.fixture(scope="module")
def encompass_bus(kafka: Broker, mail: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus whose inbox e-mails notices and whose deadline monitor runs."""
    with running_bus(kafka, tmp_path_factory.mktemp("encompass"), prefix=f"e{uuid.uuid4().hex[:10]}") as bus:
        bus.start("monitor")
        yield bus


def test_alert_notice_deadline_acknowledgement_and_report(encompass_bus: Bus, mail: Recorder) -> None:
    """The whole morning-after path for one child, checked at every hand-over."""
    bus = encompass_bus
    incident = make_incident(CHILD)
    bus.publisher().publish([incident])
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        what="the Encompass decision")
    notification_id = decision.output_id
    assert notification_id is not None
    wait_for(lambda: bus.alert("900101", notification_id), what="the alert in the inbox")

    received = wait_for(lambda: mail.received if len(mail.received) >= 2 else None, what="two e-mail notices")
    assert sorted(r.rcpt_tos[0] for r in received[:2]) == ["deputy-dsl@school-900101.example",
                                                           "dsl@school-900101.example"]
    for message in received:
        for secret in (b"Perpetua", b"Quarrington", b"2016-09-14", b"14/09/2016", incident.police_reference.encode(),
                       notification_id.encode()):
            assert secret not in message.raw
        assert "http://127.0.0.1:8080/" in message.message.get_content()

    monitor = open_monitor(bus.settings)
    try:
        tracked = wait_for(lambda: monitor.tracked(notification_id), what="the monitor tracking the alert")
        calendar = monitor.calendar("900101")
        assert tracked.due_by == calendar.due_by(decision.recorded_at)
        assert tracked.due_by.astimezone(calendar.tz).time() == calendar.session_start_time(
            tracked.due_by.astimezone(calendar.tz).date())

        acknowledge = acknowledgement_publisher(bus.settings, monitor)
        event = EncompassAcknowledged(
            **event_metadata(EncompassAcknowledged, producer="school-900101", occurred_at=decision.recorded_at,
                             recorded_at=decision.recorded_at),
            notification_id=notification_id, setting_urn="900101",
            acknowledged_by=Acknowledger(staff_id="900101-ka", role=KeyAdultRole.KEY_ADULT),
            acknowledged_at=decision.recorded_at,
        )
        acknowledge(event)

        def acknowledged() -> bool | None:
            current = monitor.tracked(notification_id)
            return True if current and current.acknowledged_at is not None else None

        wait_for(acknowledged, what="the acknowledgement reaching the monitor")
    finally:
        monitor.close()
    school_ingress = bus.names.ingress("school-900101", Family.ENCOMPASS_ACK)
    assert [r for r in bus.topic(school_ingress) if r.header("safebus.event_id") == event.event_id]
    to_police = wait_for(lambda: next(iter(bus.decisions({event.event_id}).values()), None),
                         what="the acknowledgement routed back to the police")
    assert (to_police.clause, to_police.recipient) == ("5 acknowledgement-to-police", "northdale-police")
    assert set(to_police.fields_released) == {"notification_id", "setting_urn", "acknowledged_at",
                                             "acknowledged_role"}

    env = {**os.environ, "SAFEBUS_HOME": str(bus.settings.state_dir), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix}
    report = subprocess.run([sys.executable, "-m", "safebus", "encompass", "report"], env=env, capture_output=True,
                            text=True, check=True).stdout
    [partnership] = [line.split() for line in report.splitlines() if line.split()[:1] == ["partnership"]]
    assert partnership[1] == "1"  # sent
    assert partnership[5] == "1"  # acknowledged before due_by


def test_a_move_sends_later_alerts_to_the_new_school_and_prompts_the_old_one(encompass_bus: Bus,
                                                                            mail: Recorder) -> None:
    """After an enrolment change the next alert goes to the new setting; the old one is asked for the file."""
    from safebus.app.wiring import key_service_for, tokeniser_for
    from safebus.consumers.encompass.escalation import TRANSFER_SUBJECT
    from safebus.directory import AgencyKind
    from safebus.publisher import AgencyPublisher
    from safebus.schemas import education

    bus = encompass_bus
    child = Child(first_name="Lorcan", surname="Ibbetson", date_of_birth=date(2017, 2, 2), present=False,
                  school_urn="900101")
    first = make_incident(child)
    bus.publisher().publish([first])
    wait_for(lambda: next(iter(bus.encompass({first.event_id}).values()), None), what="the first alert decided")
    directory = bus.store.load_directory()
    school = AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys("school-900101"),
                             kind=AgencyKind.SCHOOL, router=directory.router().public_keys(), names=bus.names,
                             tokeniser=tokeniser_for(bus.settings.state_dir),
                             keys=key_service_for(bus.settings.state_dir))
    move = education.EnrolmentChanged(
        **event_metadata(education.EnrolmentChanged, producer="school-900101", occurred_at=first.recorded_at,
                         recorded_at=first.recorded_at),
        child=education.ChildIdentity(first_name="Lorcan", surname="Ibbetson", date_of_birth=date(2017, 2, 2)),
        previous_setting_urn="900101", new_setting_urn="900103", effective_date=first.recorded_at.date(),
        reason=education.MoveReason.MOVED_SCHOOL,
    )
    school.publish([move])
    token = tokeniser_for(bus.settings.state_dir).person(first_name="Lorcan", surname="Ibbetson",
                                                         date_of_birth=date(2017, 2, 2))
    monitor = open_monitor(bus.settings)
    try:
        [transfer] = wait_for(lambda: [t for t in monitor.pending_transfers("900101") if t.subject == token] or None,
                              what="the file transfer tracked for the old setting")
        assert transfer.recipient_id == "900103"
    finally:
        monitor.close()
    prompts = wait_for(lambda: [r for r in mail.received if r.message["Subject"] == TRANSFER_SUBJECT] or None,
                       what="the old setting prompted by e-mail")
    assert {r.rcpt_tos[0] for r in prompts} == {"dsl@school-900101.example", "deputy-dsl@school-900101.example"}
    assert all(b"Lorcan" not in r.raw for r in prompts)

    later = make_incident(child.model_copy(update={"school_urn": None}))
    bus.publisher().publish([later])
    decision = wait_for(lambda: next(iter(bus.encompass({later.event_id}).values()), None),
                        what="the later alert decided")
    assert decision.recipient == "school-900103"


def test_a_relay_outage_delays_the_notices_and_each_arrives_once_when_it_is_back(
        encompass_bus: Bus, relay: LoopbackRelay) -> None:
    """The relay stops mid-flow: the alert is in the inbox at once, its notices wait in the outbox, then go once."""
    bus = encompass_bus
    outbox = MailOutbox(bus.settings.state_dir / "mail" / "inbox-outbox.sqlite")
    # Earlier tests' notices (other schools) must not be in flight when the relay goes.
    wait_for(lambda: True if outbox.counts().pending == 0 else None, what="the outbox empty before the outage")
    before = len(relay.recorder.received)
    relay.stop()
    child = Child(first_name="Wilhelmina", surname="Ashcombe", date_of_birth=date(2017, 2, 3), present=True,
                  school_urn="900101")
    incident = make_incident(child)
    bus.publisher().publish([incident])
    decision = wait_for(lambda: next(iter(bus.encompass({incident.event_id}).values()), None),
                        what="the Encompass decision")
    assert decision.output_id is not None
    wait_for(lambda: bus.alert("900101", decision.output_id or ""), what="the alert in the inbox, relay or not")
    try:
        wait_for(lambda: True if outbox.counts().pending >= 2 else None, what="two notices waiting in the outbox")
        assert len(relay.recorder.received) == before
        relay.start()
        def ours() -> list[Received]:
            return [r for r in relay.recorder.received[before:] if r.rcpt_tos[0].endswith("@school-900101.example")]

        wait_for(lambda: True if len(ours()) >= 2 else None, timeout_s=90,
                 what="the waiting notices delivered once the relay is back")
        time.sleep(3)  # a duplicate would be sent on the sender's next pass, a second later
        # Only this school's: a notice of another school's late alert may share the outage; each address once.
        delivered = ours()
        assert sorted(r.rcpt_tos[0] for r in delivered) == ["deputy-dsl@school-900101.example",
                                                            "dsl@school-900101.example"]
        assert outbox.counts().pending == 0
        for message in delivered:
            assert b"Wilhelmina" not in message.raw
    finally:
        outbox.close()

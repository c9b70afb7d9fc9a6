"""
Two clocks and no silent escalations, on a real broker (issues 11.4 and 12.3, 12.5).

The router dead-letters incidents dated in the future or years ago; a late
police share is routed and its lateness is on the deadline fact; a
home-educated child's notification reaches the LA's elective home education
officer by e-mail (real SMTP on loopback); a setting with no deputies goes
straight to the LA officer, and the audit topic says why.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from safebus.app.wiring import Settings, topics_for
from safebus.consumers.audit.log import read_facts
from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import EscalationNotices, MonitorWorker
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdults
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.fact_signing import FactSigner, Service, fact_publisher
from safebus.producers.synthetic import create_partnership
from safebus.records import DLQ_DETAIL, DLQ_REASON, EVENT_ID, Output, Record
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import DeadlineSet, Escalated, EscalationStep
from safebus.schemas.encompass import KeyAdultRole
from safebus.schemas.police import Child, DomesticAbuseIncident
from safebus.topics import TopicNames
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for
from tests.mail_relay import Recorder, SendingNotifier, free_port

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def mail() -> Iterator[Recorder]:
    """A real SMTP server on loopback; the monitor's workers send through it."""
    from aiosmtpd.controller import Controller

    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {k: os.environ.get(k) for k in ("SAFEBUS_SMTP", "SAFEBUS_DEMO_PASSWORD")}
    os.environ.update({"SAFEBUS_SMTP": f"127.0.0.1:{port}", "SAFEBUS_DEMO_PASSWORD": "synthetic-demo-password"})
    try:
        yield recorder
    finally:
        controller.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def clock_bus(kafka: Broker, mail: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """Router, inbox and deadline monitor on a fresh partnership."""
    with running_bus(kafka, tmp_path_factory.mktemp("clocks"), prefix=f"c{uuid.uuid4().hex[:10]}") as bus:
        bus.start("monitor")
        yield bus


def _dated(child: Child, incident_at: datetime) -> DomesticAbuseIncident:
    incident = make_incident(child)
    return incident.model_copy(update={"incident_at": incident_at, "occurred_at": incident_at})


def test_implausible_times_are_dead_lettered_and_a_late_share_is_measured(clock_bus: Bus) -> None:
    """400 days ahead and 11 years ago: dead letters with the reason; 23 days late: routed, lateness recorded."""
    bus = clock_bus
    now = datetime.now(UTC)
    child = Child(first_name="Wren", surname="Ashdown", date_of_birth=date(2016, 5, 5), present=True,
                  school_urn="900101")
    future, ancient, late = (_dated(child, now + timedelta(days=400)), _dated(child, now - timedelta(days=4017)),
                             _dated(child, now - timedelta(days=23)))
    bus.publisher().publish([future, ancient, late])

    def refused() -> dict[str, Record] | None:
        found = {str(r.header(EVENT_ID)): r for r in bus.topic(bus.names.deadletter)
                 if r.header(EVENT_ID) in {future.event_id, ancient.event_id}}
        return found if len(found) == 2 else None

    dead = wait_for(refused, what="both implausible incidents dead-lettered")
    for record in dead.values():
        assert record.header(DLQ_REASON) == "implausible-time"
    assert "in the future" in (dead[future.event_id].header(DLQ_DETAIL) or "")
    assert "older than" in (dead[ancient.event_id].header(DLQ_DETAIL) or "")
    assert bus.encompass({future.event_id, ancient.event_id}) == {}

    [decision] = wait_for(lambda: list(bus.encompass({late.event_id}).values()) or None,
                          what="the late incident routed")
    assert decision.incident_at == late.incident_at
    fact = wait_for(lambda: next((f for f in read_facts(bus.settings.bootstrap, bus.names.audit,
                                                           DeadlineSet).values()
                                  if f.notification_id == decision.output_id), None),
                    what="the deadline fact of the late share")
    assert fact.police_due_by is not None
    assert fact.police_due_by < now - timedelta(days=15)
    assert fact.shared_late_minutes is not None
    assert fact.shared_late_minutes > 15 * 24 * 60
    assert fact.due_by > now  # the school's clock starts when the alert reaches it


def test_a_home_educated_child_is_notified_to_the_ehe_officer(clock_bus: Bus, mail: Recorder) -> None:
    """Children's services record elective home education; the next incident e-mails the EHE officer at once."""
    from safebus.app.wiring import key_service_for, tokeniser_for
    from safebus.directory import AgencyKind
    from safebus.publisher import AgencyPublisher
    from safebus.schemas import education

    bus = clock_bus
    directory = bus.store.load_directory()
    [services] = directory.of_kind(AgencyKind.CHILDRENS_SERVICES)
    publisher = AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys(services.id),
                                kind=AgencyKind.CHILDRENS_SERVICES, router=directory.router().public_keys(),
                                names=bus.names, tokeniser=tokeniser_for(bus.settings.state_dir),
                                keys=key_service_for(bus.settings.state_dir))
    now = datetime.now(UTC) - timedelta(hours=2)
    ehe = education.ElectiveHomeEducationRecorded(
        **event_metadata(education.ElectiveHomeEducationRecorded, producer=services.id, occurred_at=now,
                         recorded_at=now),
        child=education.ChildIdentity(first_name="Tamsin", surname="Greyfriars", date_of_birth=date(2015, 3, 3)),
        from_date=now.date(), previous_setting_urn="900101",
        la_officer=education.LaOfficer(name="Synthetic Officer", email="ehe@northdale.example"),
    )
    publisher.publish([ehe])
    wait_for(lambda: ehe.event_id in bus.log("processor") or None, what="the home education recorded")

    incident = make_incident(Child(first_name="Tamsin", surname="Greyfriars", date_of_birth=date(2015, 3, 3),
                                   present=False, school_urn=None))
    bus.publisher().publish([incident])
    [decision] = wait_for(lambda: list(bus.encompass({incident.event_id}).values()) or None,
                          what="the home-educated child's decision")
    assert decision.clause.startswith("4.2")
    [notice] = wait_for(lambda: [r for r in mail.received if r.rcpt_tos == ["ehe@northdale-la.example"]] or None,
                        what="the EHE officer e-mailed")
    assert b"Tamsin" not in notice.raw
    assert b"Greyfriars" not in notice.raw
    step = wait_for(lambda: next((f for f in read_facts(bus.settings.bootstrap, bus.names.audit, Escalated).values()
                                  if f.notification_id == decision.output_id), None),
                    what="the EHE step on the record")
    assert step.step is EscalationStep.ELECTIVE_HOME_EDUCATION_OFFICER
    assert step.notified == ("northdale-la-elective-home-education",)


def test_a_setting_without_deputies_escalates_to_the_officer_at_once_on_the_record(
        kafka: Broker, mail: Recorder, tmp_path: Path) -> None:
    """The monitor's worker at 08:10: 'deputies' reached nobody (said so), the officer is told in the same tick."""
    names = TopicNames(prefix=f"d{uuid.uuid4().hex[:10]}")
    store = PartnershipStore(tmp_path)
    create_partnership(store)
    apply_topics(kafka.bootstrap, topics_for(Settings(state_dir=tmp_path, bootstrap=kafka.bootstrap, names=names)))
    setting = EducationSetting(urn="900101", agency_id="school-900101", name="Hollowmere Primary School")
    key_adults = KeyAdults(tmp_path / "key-adults.json")
    key_adults.add("900101-ka", setting_urn="900101", role=KeyAdultRole.KEY_ADULT, display_name="Key Adult",
                   email="only-ka@school-900101.example", password="synthetic-demo-password")
    at = datetime(2026, 11, 19, 8, 10, tzinfo=UTC)
    monitor = EncompassMonitor(tmp_path / "monitor.sqlite", calendars=sample_calendars(), policy=load_policy(),
                               urn_of={"school-900101": "900101"})
    notifier = SendingNotifier(tmp_path, int(os.environ["SAFEBUS_SMTP"].rpartition(":")[2]))
    notices = EscalationNotices(notifier=notifier, key_adults=key_adults, settings={"900101": setting},
                                monitor=monitor)
    worker = MonitorWorker(bootstrap=kafka.bootstrap, names=names, monitor=monitor, notices=notices,
                           clock=lambda: at, facts=fact_publisher(store, Service.DEADLINE_MONITOR,
                                                                  audit_topic=names.audit, bootstrap=kafka.bootstrap),
                           directory=store.load_directory)
    decision = {"event_type": "audit.sharing-decision", "agreement_id": "operation-encompass", "outcome": "shared",
                "recipient": "school-900101", "recipient_kind": "school", "output_id": f"n-{names.prefix}",
                "recorded_at": datetime(2026, 11, 18, 21, 30, tzinfo=UTC).isoformat(),
                "subjects": ["subj_0123456789abcdef0123456789abcdef"]}
    before = len(mail.received)
    signed = FactSigner(keys=store.private_keys(store.load_directory().router().id), audit_topic=names.audit).sign(
        Output(topic=names.audit, key=b"d", value=json.dumps(decision).encode()))  # the monitor acts on signed facts
    worker.observe([Record(topic=names.audit, partition=0, offset=0, key=None, value=signed.value,
                           headers=dict(signed.headers))])

    steps = {f.step: f for f in read_facts(kafka.bootstrap, names.audit, Escalated).values()}
    deputies, officer = steps[EscalationStep.DEPUTIES], steps[EscalationStep.EDUCATION_SAFEGUARDING_OFFICER]
    assert deputies.nobody_to_notify
    assert deputies.moved_to is EscalationStep.EDUCATION_SAFEGUARDING_OFFICER
    assert officer.notified == ("northdale-la-education-safeguarding",)
    assert officer.recorded_at == at  # 45 minutes early, not at 08:55
    assert [r.rcpt_tos for r in mail.received[before:]] == [["education.safeguarding@northdale-la.example"]]
    monitor.close()


def test_an_audited_backfill_routes_an_old_incident(kafka: Broker, tmp_path: Path) -> None:
    """'processor run --backfill-from' puts who, why and from when on the audit topic, then routes old incidents."""
    import subprocess
    import sys

    from safebus.schemas.audit import BackfillAuthorised

    with running_bus(kafka, tmp_path, prefix=f"b{uuid.uuid4().hex[:10]}") as bus:
        bus.stop("processor")
        start = (datetime.now(UTC) - timedelta(days=365)).date()
        env = {**os.environ, "SAFEBUS_HOME": str(tmp_path), "SAFEBUS_TOPIC_PREFIX": bus.names.prefix,
               "SAFEBUS_LOG_LEVEL": "INFO"}
        with (tmp_path / "processor.log").open("ab") as log:
            bus.processes["processor"] = subprocess.Popen(
                [sys.executable, "-m", "safebus", "processor", "run", "--bootstrap", kafka.bootstrap,
                 "--backfill-from", start.isoformat(), "--backfill-reason", "records-system migration",
                 "--by", "ops-1"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        [fact] = wait_for(lambda: list(read_facts(kafka.bootstrap, bus.names.audit, BackfillAuthorised).values())
                          or None, what="the backfill on the record")
        assert (fact.backfill_from, fact.authorised_by, fact.reason) == (start, "ops-1", "records-system migration")
        old = _dated(Child(first_name="Ansel", surname="Marchbank", date_of_birth=date(2015, 1, 9), present=True,
                           school_urn="900101"), datetime.now(UTC) - timedelta(days=200))
        bus.publisher().publish([old])
        wait_for(lambda: bus.encompass({old.event_id}) or None, what="the 200-day-old incident routed",
                 timeout_s=90)

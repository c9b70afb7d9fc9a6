"""On a real broker: a forged acknowledgement written with a plain Kafka producer does not silence an escalation."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from safebus.app.wiring import Settings, directory_source, topics_for
from safebus.consumers.audit.log import read_facts
from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import MonitorWorker
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import PartnershipStore
from safebus.fact_signing import Service, fact_publisher
from safebus.kafka_security import client_config
from safebus.producers.synthetic import create_partnership
from safebus.records import Output
from safebus.schemas.audit import Escalated, EscalationStep
from safebus.topics import TopicNames
from tests.integration.conftest import Broker, wait_for


def test_a_forged_acknowledgement_on_the_audit_topic_does_not_stop_the_escalation(
        kafka: Broker, tmp_path: Path) -> None:
    """
    A plain producer writes 'acknowledged at 07:00' for an alert, then the router's signed decision arrives.

    The running monitor (its clock at Thursday 08:55, the deadline) ignores the
    forgery and escalates to the deputies and the education safeguarding officer;
    on today's main the forgery closed the alert and nobody was told.
    """
    names = TopicNames(prefix=f"f{uuid.uuid4().hex[:10]}")
    store = PartnershipStore(tmp_path)
    create_partnership(store)
    settings = Settings(state_dir=tmp_path, bootstrap=kafka.bootstrap, names=names)
    apply_topics(kafka.bootstrap, topics_for(settings))
    nid = f"n-{names.prefix}"
    forged = {"event_type": "audit.acknowledged", "notification_id": nid, "staff_id": "900101-ka",
              "acknowledged_at": datetime(2026, 11, 19, 7, 0, tzinfo=UTC).isoformat()}
    plain = Producer(client_config(kafka.bootstrap))
    plain.produce(names.audit, key=nid.encode(), value=json.dumps(forged).encode())
    assert plain.flush(30) == 0
    decision = {"event_type": "audit.sharing-decision", "agreement_id": "operation-encompass", "outcome": "shared",
                "recipient": "school-900101", "recipient_kind": "school", "output_id": nid,
                "recorded_at": datetime(2026, 11, 18, 21, 30, tzinfo=UTC).isoformat(),
                "subjects": ["subj_0123456789abcdef0123456789abcdef"]}
    router = fact_publisher(store, store.load_directory().router().id, audit_topic=names.audit,
                            bootstrap=kafka.bootstrap)
    router.publish([Output(topic=names.audit, key=nid.encode(), value=json.dumps(decision).encode())])

    monitor = EncompassMonitor(tmp_path / "monitor.sqlite", calendars=sample_calendars(), policy=load_policy(),
                               urn_of={"school-900101": "900101"})
    worker = MonitorWorker(bootstrap=kafka.bootstrap, names=names, monitor=monitor, notices=None,
                           clock=lambda: datetime(2026, 11, 19, 8, 55, tzinfo=UTC),
                           facts=fact_publisher(store, Service.DEADLINE_MONITOR, audit_topic=names.audit,
                                                bootstrap=kafka.bootstrap),
                           directory=directory_source(store), group_id=f"monitor-{names.prefix}")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        steps = wait_for(lambda: {f.step for f in read_facts(kafka.bootstrap, names.audit, Escalated).values()
                                  if f.notification_id == nid} >= {EscalationStep.DEPUTIES,
                                                                   EscalationStep.EDUCATION_SAFEGUARDING_OFFICER}
                         or None, what="the escalation despite the forged acknowledgement")
        assert steps is True
        tracked = monitor.tracked(nid)
        assert tracked is not None
        assert tracked.acknowledged_at is None
    finally:
        stop.set()
        thread.join(timeout=15)
        monitor.close()
    assert not thread.is_alive()

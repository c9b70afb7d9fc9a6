"""The Encompass monitor acts only on audit facts signed by the component that states them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.escalation import MonitorWorker
from safebus.consumers.encompass.monitor import EncompassMonitor
from safebus.fact_signing import FactPublisher, FactSigner, Service, fact_signer
from safebus.records import Output, Record
from safebus.schemas.audit import Escalated, EscalationStep
from safebus.topics import TopicNames
from tests.conftest import Partnership

NAMES = TopicNames(prefix="t")
RECORDED = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)  # Wednesday night: due Thursday 08:55
NID = "n-forged-ack"


class _RecordedFacts(FactPublisher):
    """Signs like the real publisher and keeps the records instead of producing them."""

    def __init__(self, signer: FactSigner) -> None:
        self.signer = signer
        self.published: list[Output] = []

    def publish(self, outputs: Iterable[Output]) -> None:
        """Keep the signed records."""
        self.published.extend(self.signer.sign_all(outputs))


class _Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _record(fact: dict[str, Any], signer: FactSigner | None, offset: int) -> Record:
    output = Output(topic=NAMES.audit, key=b"k", value=json.dumps(fact).encode())
    if signer is not None:
        output = signer.sign(output)
    return Record(topic=output.topic, partition=0, offset=offset, key=output.key, value=output.value,
                  headers=dict(output.headers))


def _decision() -> dict[str, Any]:
    return {"event_type": "audit.sharing-decision", "agreement_id": "operation-encompass", "outcome": "shared",
            "recipient": "school-900101", "recipient_kind": "school", "output_id": NID,
            "recorded_at": RECORDED.isoformat(), "subjects": ["subj_0123456789abcdef0123456789abcdef"]}


def _acknowledged() -> dict[str, Any]:
    return {"event_type": "audit.acknowledged", "notification_id": NID, "staff_id": "900101-ka",
            "acknowledged_at": datetime(2026, 11, 19, 7, 0, tzinfo=UTC).isoformat()}


@pytest.fixture
def worker(partnership: Partnership, tmp_path: Path) -> MonitorWorker:
    """A monitor worker with no broker: facts are signed and kept, the clock is Thursday 07:00."""
    monitor = EncompassMonitor(tmp_path / "monitor.sqlite", calendars=sample_calendars(), policy=load_policy(),
                               urn_of={"school-900101": "900101"})
    facts = _RecordedFacts(fact_signer(partnership.store, Service.DEADLINE_MONITOR, audit_topic=NAMES.audit))
    return MonitorWorker(bootstrap="unused:9092", names=NAMES, monitor=monitor, notices=None,
                         clock=_Clock(datetime(2026, 11, 19, 7, 0, tzinfo=UTC)), facts=facts,
                         directory=lambda: partnership.directory)


def _router(partnership: Partnership) -> FactSigner:
    return FactSigner(keys=partnership.store.private_keys(partnership.directory.router().id), audit_topic=NAMES.audit)


def _escalations(worker: MonitorWorker) -> list[EscalationStep]:
    assert isinstance(worker.facts, _RecordedFacts)
    return [Escalated.model_validate_json(o.value).step for o in worker.facts.published
            if b'"audit.escalated"' in o.value]


@pytest.mark.parametrize("forger", ["unsigned", "wrong-topic", "gateway-key", "tampered"])
def test_a_forged_acknowledgement_does_not_stop_the_escalation(
        worker: MonitorWorker, partnership: Partnership, forger: str) -> None:
    """Unsigned, signed for another topic, signed by a service that never acknowledges, or altered: ignored,
    logged with its coordinates and reason, and the deputies and then the officer are still told."""
    store = partnership.store
    if forger == "unsigned":
        forged = _record(_acknowledged(), None, 2)
    elif forger == "wrong-topic":
        other = FactSigner(keys=store.private_keys(Service.INBOX_WEB.agency_id), audit_topic="elsewhere")
        signed = other.sign(Output(topic="elsewhere", key=b"k", value=json.dumps(_acknowledged()).encode()))
        forged = Record(topic=NAMES.audit, partition=0, offset=2, key=b"k", value=signed.value,
                        headers=dict(signed.headers))
    elif forger == "gateway-key":
        forged = _record(_acknowledged(), fact_signer(store, Service.GATEWAY, audit_topic=NAMES.audit), 2)
    else:
        genuine = _record({**_acknowledged(), "notification_id": "another"},
                          fact_signer(store, Service.INBOX_WEB, audit_topic=NAMES.audit), 2)
        forged = Record(topic=genuine.topic, partition=0, offset=2, key=b"k", headers=genuine.headers,
                        value=json.dumps(_acknowledged()).encode())

    with capture_logs() as logs:
        worker.observe([_record(_decision(), _router(partnership), 1), forged])

    tracked = worker.monitor.tracked(NID)
    assert tracked is not None
    assert tracked.acknowledged_at is None
    [warning] = [entry for entry in logs if entry["event"] == "audit_fact_ignored"]
    assert (warning["topic"], warning["offset"], warning["log_level"]) == (NAMES.audit, 2, "warning")
    assert warning["reason"] in {"unsigned-fact", "bad-fact-signature", "fact-author-not-permitted"}
    assert "900101-ka" not in json.dumps(logs)
    clock = worker.clock
    assert isinstance(clock, _Clock)
    counted = {step: _steps_counted(step) for step in ("deputies", "education-safeguarding-officer")}
    clock.at = datetime(2026, 11, 19, 8, 10, tzinfo=UTC)
    worker.tick()
    clock.at = datetime(2026, 11, 19, 8, 55, tzinfo=UTC)
    worker.tick()
    assert _escalations(worker) == [EscalationStep.DEPUTIES, EscalationStep.EDUCATION_SAFEGUARDING_OFFICER]
    assert {step: _steps_counted(step) - before for step, before in counted.items()} == {
        "deputies": 1, "education-safeguarding-officer": 1}, "each step taken is counted for /metrics"


def _steps_counted(step: str) -> float:
    """safebus_escalation_steps_total for `step` in this process's registry (0 before the first)."""
    return REGISTRY.get_sample_value("safebus_escalation_steps_total", {"step": step}) or 0.0


def test_the_inbox_webs_signed_acknowledgement_stops_it(worker: MonitorWorker, partnership: Partnership) -> None:
    """The genuine acknowledgement, signed by the inbox web app, closes the item: nobody is escalated to."""
    inbox_web = fact_signer(partnership.store, Service.INBOX_WEB, audit_topic=NAMES.audit)
    worker.observe([_record(_decision(), _router(partnership), 1), _record(_acknowledged(), inbox_web, 2)])
    tracked = worker.monitor.tracked(NID)
    assert tracked is not None
    assert tracked.acknowledged_at is not None
    clock = worker.clock
    assert isinstance(clock, _Clock)
    clock.at = datetime(2026, 11, 19, 9, 0, tzinfo=UTC)
    worker.tick()
    assert _escalations(worker) == []


def test_an_unsigned_sharing_decision_starts_no_tracking(worker: MonitorWorker, partnership: Partnership) -> None:
    """A decision written with a plain producer, or signed by a service instead of the router, tracks nothing."""
    inbox_web = fact_signer(partnership.store, Service.INBOX_WEB, audit_topic=NAMES.audit)
    worker.observe([_record(_decision(), None, 1), _record(_decision(), inbox_web, 2)])
    assert worker.monitor.tracked(NID) is None

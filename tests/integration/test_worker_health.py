"""A worker's health endpoint as a supervisor and Prometheus meet it: a real queue worker on a real broker."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
import uuid
from datetime import date
from pathlib import Path

import pytest

from safebus.kafka_io import produce_all, reliable_producer
from safebus.producers.gateway import EVENTS_PATH, add_credential, default_credentials_path
from safebus.records import Output
from safebus.schemas.police import Adult, AdultRole, Child, Relationship, RiskGrade
from tests.integration.conftest import Bus, make_incident, wait_for

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _metric(text: str, name: str, **labels: str) -> float | None:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_queue_worker_answers_live_ready_and_counts_what_it_delivers(bus: Bus) -> None:
    """
    ``safebus queue run --health-port`` is live at once, ready once it holds its partitions and has caught up,
    and its /metrics count the records it read, the shares it stored and its lag per topic (0 when caught up).
    """
    port = _free_port()
    bus.start("queue-health", "--health-port", str(port), worker="queue")
    try:
        wait_for(lambda: _get(port, "/healthz")[0] == 200, what=f"/healthz 200\n{bus.log('queue-health')}")
        wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90,
                 what=f"/readyz 200\n{bus.log('queue-health')}")
        assert _get(port, "/nothing")[0] == 404

        child = Child(first_name="Kit", surname="Ashdown", date_of_birth=date(2016, 9, 1), present=True,
                      school_urn="900101")
        victim = Adult(first_name="Rowan", surname="Ashdown", role=AdultRole.VICTIM,
                       relationship=Relationship.PARENT, date_of_birth=date(1989, 4, 12))
        suspect = Adult(first_name="Otis", surname="Pemberton", role=AdultRole.SUSPECT,
                        relationship=Relationship.PARENTS_PARTNER)
        incident = make_incident(child, adults=(victim, suspect)).model_copy(update={"risk_grade": RiskGrade.HIGH})
        bus.publisher().publish([incident])

        def delivered() -> str | None:
            status, text = _get(port, "/metrics")
            stored = _metric(text, "safebus_shares_delivered_total", what="referrals")
            return text if status == 200 and stored is not None and stored >= 3 else None

        text = wait_for(delivered, timeout_s=90, what=f"three referrals counted\n{bus.log('queue-health')}")
        marac_topic = next(t for t in _topics(text) if "marac" in t)
        assert (_metric(text, "safebus_records_in_total", topic=marac_topic) or 0) >= 1
        wait_for(lambda: _metric(_get(port, "/metrics")[1], "safebus_consumer_lag", topic=marac_topic) == 0,
                 what="the lag of a caught-up worker reported as 0")
    finally:
        bus.stop("queue-health")
    assert _get(port, "/healthz")[0] == 0, "the endpoint goes with its worker"


def _topics(metrics: str) -> set[str]:
    return {line.split('topic="', 1)[1].split('"', 1)[0] for line in metrics.splitlines()
            if line.startswith("safebus_records_in_total{")}


def test_sequencer_answers_ready_and_reports_its_ledger_and_the_age_of_its_last_checkpoint(bus: Bus) -> None:
    """
    ``safebus audit sequence --health-port``: ready once caught up; /metrics gives the ledger's leaves (growing as
    the router's decisions arrive) and seconds since the last signed checkpoint, what an auditor's alert watches.
    """
    port = _free_port()
    bus.start("sequencer-health", "--health-port", str(port), worker="sequencer")
    try:
        wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90,
                 what=f"/readyz 200\n{bus.log('sequencer-health')}")
        before = _metric(_get(port, "/metrics")[1], "safebus_audit_ledger_leaves")
        assert before is not None
        child = Child(first_name="Ivy", surname="Marlow", date_of_birth=date(2017, 2, 3), present=True,
                      school_urn="900101")
        bus.publisher().publish([make_incident(child)])

        def grown() -> str | None:
            status, text = _get(port, "/metrics")
            leaves = _metric(text, "safebus_audit_ledger_leaves")
            age = _metric(text, "safebus_audit_checkpoint_age_seconds")
            signed = age is not None and age == age  # NaN until the first checkpoint
            return text if status == 200 and leaves is not None and leaves > before and signed else None

        text = wait_for(grown, timeout_s=90, what=f"the ledger grew and a checkpoint was signed\n"
                                                  f"{bus.log('sequencer-health')}")
        age = _metric(text, "safebus_audit_checkpoint_age_seconds")
        assert age is not None
        assert 0 <= age < 60, age  # checkpoints every 10 s by default
    finally:
        bus.stop("sequencer-health")


def test_encompass_monitor_answers_live_and_ready_and_serves_its_escalation_metric(bus: Bus) -> None:
    """``safebus encompass monitor --health-port`` is ready once caught up on the audit topic and serves /metrics."""
    port = _free_port()
    bus.start("monitor-health", "--health-port", str(port), worker="monitor")
    try:
        wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90,
                 what=f"/readyz 200\n{bus.log('monitor-health')}")
        status, text = _get(port, "/metrics")
        assert status == 200
        assert "# TYPE safebus_escalation_steps_total counter" in text
    finally:
        bus.stop("monitor-health")
    assert _get(port, "/healthz")[0] == 0, "the endpoint goes with its worker"


def _sum(text: str, name: str) -> float:
    """A counter summed over all its labels."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_router_answers_live_ready_and_counts_what_it_routes_and_dead_letters(bus: Bus) -> None:
    """
    ``safebus processor run --health-port``: live while Faust's loop comes round, ready once its committed offsets
    reach what its partitions held at start, and /metrics count records in per topic, dead letters by reason and
    the lag per topic (0 once caught up).  The bus's router is restarted with the option (and left running).
    """
    port = _free_port()
    bus.stop("processor")
    bus.start("processor", "--health-port", str(port))
    wait_for(lambda: _get(port, "/healthz")[0] == 200, what=f"/healthz 200\n{bus.log('processor')}")
    wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=120, what=f"/readyz 200\n{bus.log('processor')}")
    assert _get(port, "/nothing")[0] == 404

    child = Child(first_name="Wren", surname="Hollis", date_of_birth=date(2015, 5, 6), present=True,
                  school_urn="900101")
    bus.publisher().publish([make_incident(child)])

    def routed() -> str | None:
        status, text = _get(port, "/metrics")
        return text if status == 200 and _topics(text) else None

    text = wait_for(routed, timeout_s=90, what=f"a record counted in\n{bus.log('processor')}")
    [topic] = _topics(text)
    dead_before = _sum(text, "safebus_dead_letters_total")
    produce_all(reliable_producer(bus.settings.bootstrap),
                [Output(topic=topic, key=b"not-an-incident", value=b"not an envelope at all")])

    def dead_lettered() -> str | None:
        text = _get(port, "/metrics")[1]
        return text if _sum(text, "safebus_dead_letters_total") > dead_before else None

    text = wait_for(dead_lettered, timeout_s=90, what=f"a dead letter counted\n{bus.log('processor')}")
    assert (_metric(text, "safebus_records_in_total", topic=topic) or 0) >= 2
    wait_for(lambda: _metric(_get(port, "/metrics")[1], "safebus_consumer_lag", topic=topic) == 0,
             what="the lag of a caught-up router reported as 0")


def test_gateway_answers_on_its_own_loopback_port_and_counts_what_it_accepts_and_refuses(bus: Bus) -> None:
    """
    ``safebus gateway run --health-port``: a scrape target apart from the public port, ready once connected to the
    bus, with events accepted per ingress topic and requests refused by status and reason in /metrics.
    """
    token = add_credential(default_credentials_path(bus.settings.state_dir), "northdale-police")
    public, port = _free_port(), _free_port()
    bus.start("gateway-health", "--port", str(public), "--health-port", str(port), worker="gateway")
    try:
        wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=90,
                 what=f"/readyz 200\n{bus.log('gateway-health')}")
        assert _get(public, "/readyz")[0] == 404, "health is not served on the public port"
        example = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "police.domestic-abuse-incident.json"
        payload = {**json.loads(example.read_text()), "event_id": str(uuid.uuid4())}
        auth = {"Authorization": f"Bearer {token}"}
        assert _post(public, EVENTS_PATH, json.dumps(payload).encode(),
                     {**auth, "Content-Type": "application/json"}) == 202
        assert _post(public, EVENTS_PATH, b"{}", {**auth, "Content-Type": "text/plain"}) == 415

        status, text = _get(port, "/metrics")
        assert status == 200
        assert _sum(text, "safebus_gateway_events_accepted_total") == 1
        assert _metric(text, "safebus_gateway_requests_refused_total", status="415",
                       reason="unsupported-media-type") == 1
    finally:
        bus.stop("gateway-health")
    assert _get(port, "/healthz")[0] == 0, "the endpoint goes with its worker"

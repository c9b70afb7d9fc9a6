"""The ingress gateway on a real broker: a plain-JSON POST becomes a routed, audited Encompass alert."""

from __future__ import annotations

import http.client
import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safebus.producers.gateway import Gateway, add_credential
from safebus.schemas.decision import Outcome
from tests.integration.conftest import Bus, wait_for

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "police.domestic-abuse-incident.json"


@dataclass(frozen=True)
class Served:
    """The bus's gateway, serving, and the force's bearer token."""

    gateway: Gateway
    police_token: str


@pytest.fixture(scope="module")
def served(bus: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway with real Kafka publishers for the `bus` partnership, on a free loopback port."""
    credentials = tmp_path_factory.mktemp("gateway") / "credentials.json"
    token = add_credential(credentials, "northdale-police", directory=bus.store.load_directory())
    gateway = Gateway(bus.settings, credentials)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(gateway=gateway, police_token=token)
    finally:
        gateway.shutdown()
        thread.join(timeout=30)


def post(served: Served, payload: dict[str, Any], *, token: str | None) -> tuple[int, dict[str, Any]]:
    """POST `payload` as JSON over a real connection; return the status and JSON body."""
    host, port = served.gateway.address
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        connection.request("POST", "/v1/events", body=json.dumps(payload).encode(), headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def fresh_incident(first_name: str, surname: str) -> dict[str, Any]:
    """The published example incident, an hour ago, with a new id and reference and one child at school 900101."""
    payload: dict[str, Any] = json.loads(EXAMPLE.read_text())
    now = datetime.now(UTC)
    payload.update(
        event_id=str(uuid.uuid4()), police_reference=f"NDP-2026-{random.randint(0, 999_999):06d}",
        occurred_at=(now - timedelta(hours=1)).isoformat(), incident_at=(now - timedelta(hours=1)).isoformat(),
        attended_at=(now - timedelta(minutes=40)).isoformat(), recorded_at=now.isoformat(),
    )
    payload["children"] = [{**payload["children"][0], "first_name": first_name, "surname": surname,
                            "date_of_birth": "2017-06-21", "school_urn": "900101"}]
    return payload



def test_a_posted_incident_is_routed_and_reaches_the_schools_inbox(bus: Bus, served: Served) -> None:
    """202 with the event id; the router shares it with school-900101 and the Key Adult's inbox shows the alert."""
    surname = f"Gateway{uuid.uuid4().hex[:8]}"
    payload = fresh_incident("Juniper", surname)

    status, body = post(served, payload, token=served.police_token)
    assert (status, body) == (202, {"event_id": payload["event_id"]})

    decisions = wait_for(lambda: bus.encompass({payload["event_id"]}),
                         what=f"a decision for the posted incident\n{bus.log('processor')}")
    [decision] = decisions.values()
    assert (decision.outcome, decision.recipient) == (Outcome.SHARED, "school-900101")
    assert decision.output_id is not None
    alert = wait_for(lambda: bus.notification("900101", decision.output_id or ""),
                     what=f"the alert\n{bus.log('inbox')}")
    assert (alert.child_first_name, alert.child_surname, alert.child_date_of_birth) == ("Juniper", surname,
                                                                                        date(2017, 6, 21))
    assert alert.police_reference == payload["police_reference"]


def test_an_unauthenticated_post_is_401_and_publishes_nothing(bus: Bus, served: Served) -> None:
    """Without a credential the gateway answers 401, and the router never hears of the event."""
    payload = fresh_incident("Rowan", f"Nocred{uuid.uuid4().hex[:8]}")

    status, body = post(served, payload, token=None)
    assert (status, body["error"]) == (401, "unauthenticated")

    control = fresh_incident("Sorrel", f"Control{uuid.uuid4().hex[:8]}")
    assert post(served, control, token=served.police_token)[0] == 202
    wait_for(lambda: bus.decisions({control["event_id"]}), what="the control event's decision")
    assert bus.decisions({payload["event_id"]}) == {}


def test_an_invalid_post_is_422_with_every_error_path(served: Served) -> None:
    """A payload with two broken fields is answered 422 naming both paths, over real HTTP."""
    payload = fresh_incident("Hazel", "Invalid")
    payload["police_reference"] = "not-a-reference"
    payload["children"][0]["date_of_birth"] = "21/06/2017"

    status, body = post(served, payload, token=served.police_token)
    assert status == 422
    assert {"$.police_reference", "$.children[0].date_of_birth"} <= {e["path"] for e in body["errors"]}

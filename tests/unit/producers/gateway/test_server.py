"""The ingress gateway over real HTTP on loopback, with Kafka replaced by a publisher that only records."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from safebus.app.agency_admin import revoke_key, rotate_keys
from safebus.app.wiring import Settings, key_service_for
from safebus.directory import Agency, Directory
from safebus.envelope import open_envelope, peek_header
from safebus.errors import BrokerError, ConfigError
from safebus.health import WorkerHealth
from safebus.producers.gateway import (
    MAX_BODY_BYTES,
    EventPublisher,
    Gateway,
    GatewayLimits,
    add_credential,
    agency_publishers,
    default_credentials_path,
    revoke_credential,
)
from safebus.producers.police import PolicePublisher
from safebus.publisher import AgencyPublisher
from safebus.records import EVENT_ID, Output
from safebus.schemas._base import Event
from safebus.schemas.police import DomesticAbuseIncident
from safebus.schemas.registry import Family
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

EXAMPLES = Path(__file__).resolve().parents[4] / "schemas" / "examples"
AGENCIES = ("northdale-police", "northdale-idva", "school-900101")


def example(event_type: str, **changes: Any) -> dict[str, Any]:
    """A published example payload with a fresh event id and `changes` applied."""
    payload: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return {**payload, "event_id": str(uuid.uuid4()), **changes}


class RecordingPublisher(AgencyPublisher):
    """A real `AgencyPublisher` (same permissions, same sealing) that keeps its records instead of sending them."""

    def __init__(self, *, broker_down: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broker_down = broker_down
        self.events: list[Event] = []
        self.outputs: list[Output] = []

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Record the events the gateway hands over, then seal and "send" them."""
        self.events.extend(events)
        return super().publish(events)

    def publish_outputs(self, outputs: list[Output]) -> list[str]:
        """Keep the sealed records, or fail as an unreachable broker does."""
        if self.broker_down.is_set():
            raise BrokerError("1 records undelivered; errors: ['Local: Message timed out']")
        self.outputs.extend(outputs)
        return [dict(o.headers)[EVENT_ID].decode() for o in outputs]


@dataclass
class Running:
    """A serving gateway, the bearer tokens of three agencies, and every publisher the gateway has built."""

    gateway: Gateway
    credentials: Path
    tokens: dict[str, str]
    publishers: list[RecordingPublisher] = field(default_factory=list)
    broker_down: threading.Event = field(default_factory=threading.Event)

    def publisher(self, agency_id: str) -> RecordingPublisher:
        """The agency's latest publisher."""
        return [p for p in self.publishers if p.agency.agency_id == agency_id][-1]

    def published(self) -> list[Event]:
        """Every event any publisher was given."""
        return [event for publisher in self.publishers for event in publisher.events]


@dataclass(frozen=True)
class Answer:
    """An HTTP response: status, headers (lower-case names) and JSON body."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def request(gateway: Gateway, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> (
    Answer
):
    """Send one request over a fresh connection and read the JSON answer."""
    host, port = gateway.address
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body if method == "POST" else None, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw or b"{}"))
    finally:
        connection.close()


def post(running: Running, payload: object, *, agency: str | None = "northdale-police", raw: bytes | None = None,
         authorization: str | None = None, content_type: str = "application/json") -> Answer:
    """POST `payload` (or `raw` bytes) to /v1/events as `agency`, or with an explicit `authorization` header."""
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif agency is not None:
        headers["Authorization"] = f"Bearer {running.tokens[agency]}"
    body = raw if raw is not None else json.dumps(payload).encode()
    return request(running.gateway, "POST", "/v1/events", body, headers)


@pytest.fixture
def running(partnership: Partnership) -> Iterator[Running]:
    """A gateway on 127.0.0.1 at a free port, with credentials for a police force, an IDVA service and a school."""
    credentials = default_credentials_path(partnership.state_dir)
    tokens = {agency: add_credential(credentials, agency) for agency in AGENCIES}
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    holder: list[Running] = []

    def factory(agency: Agency, directory: Directory) -> EventPublisher:
        publisher = RecordingPublisher(
            broker_down=holder[0].broker_down, bootstrap=settings.bootstrap, agency=partnership.keys(agency.id),
            kind=agency.kind, router=directory.router().public_keys(), names=settings.names,
            tokeniser=partnership.tokeniser, keys=key_service_for(partnership.state_dir), clock=lambda: FIXED_NOW,
        )
        holder[0].publishers.append(publisher)
        return publisher

    # No rate limit here: some tests send hundreds of bodies with one credential (test_gateway_bounds tests limits).
    unlimited = GatewayLimits(rate_per_s=1e6, burst=1_000_000)
    gateway = Gateway(settings, credentials, publisher_factory=factory, limits=unlimited)
    holder.append(Running(gateway=gateway, credentials=credentials, tokens=tokens))
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        gateway.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the gateway did not stop"


def test_a_valid_event_is_sealed_for_the_router_and_answered_202_with_its_id(
        running: Running, partnership: Partnership) -> None:
    """202 with the event id; the publisher got exactly the posted event, signed by the force, for the router."""
    payload = example("police.domestic-abuse-incident")
    answer = post(running, payload)

    assert (answer.status, answer.body) == (202, {"event_id": payload["event_id"]})
    police = running.publisher("northdale-police")
    assert police.events == [DomesticAbuseIncident.model_validate_json(json.dumps(payload))]
    [record] = police.outputs
    assert record.topic == "safebus.ingress.northdale-police.da-incident"
    opened = open_envelope(record.value, recipient=partnership.router,
                           senders={"northdale-police": partnership.police.public()},
                           subject_keys=key_service_for(partnership.state_dir).lookup)
    sealed = json.loads(opened.plaintext)
    assert sealed["event_id"] == payload["event_id"]
    assert sealed["police_reference"] == payload["police_reference"]


@pytest.mark.parametrize("authorization", [
    None,
    "Basic bm9ydGhkYWxlOnBvbGljZQ==",
    "Bearer",
    "Bearer {id}",
    "Bearer {id}.wrong-secret",
    "Bearer cred-0123456789abcdef.{secret}",
    "Bearer {id}.{secret} extra",
], ids=["missing", "basic", "no-token", "no-secret", "wrong-secret", "unknown-id", "trailing-junk"])
def test_a_request_without_a_valid_credential_is_401_and_says_nothing_more(
        running: Running, authorization: str | None) -> None:
    """Missing, malformed, unknown or wrong credentials: the same 401 with WWW-Authenticate: Bearer, nothing sent."""
    credential_id, secret = running.tokens["northdale-police"].split(".", 1)
    header = None if authorization is None else authorization.format(id=credential_id, secret=secret)
    answer = post(running, example("police.domestic-abuse-incident"), agency=None, authorization=header)

    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.body == {"error": "unauthenticated", "message": "a valid bearer credential is required"}
    assert running.published() == []


def test_a_revoked_credential_is_refused_from_the_next_request(running: Running) -> None:
    """Revoking takes effect on the running gateway without a restart, with the same 401 as a wrong secret."""
    assert post(running, example("police.domestic-abuse-incident")).status == 202
    revoke_credential(running.credentials, running.tokens["northdale-police"].split(".")[0])

    answer = post(running, example("police.domestic-abuse-incident"))
    assert answer.status == 401
    assert answer.body["error"] == "unauthenticated"
    assert len(running.published()) == 1


def test_an_agency_may_only_publish_payloads_that_name_it_as_producer(running: Running) -> None:
    """The IDVA service cannot submit a referral in another agency's name: 403, nothing published."""
    answer = post(running, example("marac.referral-submitted", producer="northdale-da-hub"), agency="northdale-idva")

    assert answer.status == 403
    assert answer.body["error"] == "producer-mismatch"
    assert running.published() == []
    assert post(running, example("marac.referral-submitted"), agency="northdale-idva").status == 202


def test_an_agency_may_only_publish_contracts_its_kind_publishes(running: Running) -> None:
    """A school posting a police incident in its own name gets 403; its own kind's contract is accepted."""
    answer = post(running, example("police.domestic-abuse-incident", producer="school-900101"), agency="school-900101")

    assert answer.status == 403
    assert answer.body["error"] == "event-type-not-permitted"
    assert running.published() == []
    assert post(running, example("encompass.acknowledged"), agency="school-900101").status == 202


def test_key_rotation_and_revocation_apply_without_a_restart(running: Running, partnership: Partnership) -> None:
    """After a rotation the force's events are signed with its new key; an agency with no active key gets 403."""
    assert post(running, example("police.domestic-abuse-incident")).status == 202
    rotated = rotate_keys(partnership.store, "northdale-police", now=datetime.now(UTC))
    assert post(running, example("police.domestic-abuse-incident")).status == 202
    [after] = running.publisher("northdale-police").outputs
    header = peek_header(after.value)
    assert header is not None
    assert header["signing_key_id"] == rotated.entry.keys[-1].signing_key_id

    idva = partnership.directory.get("northdale-idva")
    assert idva is not None
    revoke_key(partnership.store, "northdale-idva", idva.keys[0].signing_key_id, now=datetime.now(UTC))
    answer = post(running, example("marac.referral-submitted"), agency="northdale-idva")
    assert (answer.status, answer.body["error"]) == (403, "agency-not-permitted")


def test_the_real_factory_keys_police_incidents_by_reference(partnership: Partnership) -> None:
    """The default publishers are the force's own kind: a police incident is keyed by its police reference."""
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    directory = partnership.store.load_directory()
    police = directory.get("northdale-police")
    assert police is not None
    publisher = agency_publishers(settings)(police, directory)
    assert isinstance(publisher, PolicePublisher)
    incident = DomesticAbuseIncident.model_validate_json(json.dumps(example("police.domestic-abuse-incident")))
    assert publisher.seal(incident).key == incident.police_reference.encode()


def test_an_invalid_payload_is_422_listing_every_error_with_its_path(running: Running) -> None:
    """Three broken fields give (at least) three errors, each at the broken field's JSON path; nothing is sent."""
    payload = example("police.domestic-abuse-incident", police_reference="12345", risk_grade="extreme")
    payload["children"][0]["date_of_birth"] = "not-a-date"
    answer = post(running, payload)

    assert answer.status == 422
    errors = answer.body["errors"]
    assert len(errors) >= 3
    assert {"$.police_reference", "$.risk_grade", "$.children[0].date_of_birth"} <= {e["path"] for e in errors}
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert running.published() == []


def test_a_body_over_the_limit_is_413(running: Running) -> None:
    """
    Bodies over 1 MiB are refused unread, and the client, still sending, gets the 413 every time.

    The gateway drains what the client sends after the answer. Otherwise
    closing with unread data resets the connection, and the reset often
    destroys the 413 before the client reads it.
    """
    for size in (MAX_BODY_BYTES + 1, 4 << 20) * 3:
        answer = post(running, None, raw=b" " * size)
        assert answer.status == 413
        assert answer.body["error"] == "payload-too-large"
    assert running.published() == []


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b'{"event_id": NaN}', b"[" * 100_000],
                         ids=["syntax", "not-utf8", "nan", "deep"])
def test_a_body_that_is_not_json_is_400(running: Running, raw: bytes) -> None:
    """Unparseable, non-UTF-8, non-standard or absurdly nested JSON is 400 with the reason, not a crash."""
    answer = post(running, None, raw=raw)

    assert answer.status == 400
    assert answer.body["error"] == "invalid-json"
    assert answer.body["errors"][0]["path"] == "$"


def test_a_body_that_is_not_declared_json_is_415(running: Running) -> None:
    """The payload must be sent as application/json."""
    answer = post(running, example("police.domestic-abuse-incident"), content_type="text/plain")

    assert answer.status == 415
    assert running.published() == []


def test_a_broker_failure_is_503_with_retry_advice(running: Running) -> None:
    """When the bus does not confirm the event, the caller is told to retry the same payload later."""
    running.broker_down.set()
    answer = post(running, example("police.domestic-abuse-incident"))

    assert answer.status == 503
    assert answer.headers["retry-after"] == "5"
    assert "same event_id" in answer.body["message"]


def test_health_answers_200_and_events_only_take_post(running: Running) -> None:
    """``GET /v1/health`` is 200; ``GET /v1/events`` is 405 naming POST; an unknown path is 404."""
    assert request(running.gateway, "GET", "/v1/health").body == {"status": "ok"}
    assert request(running.gateway, "GET", "/v1/health").status == 200
    wrong_method = request(running.gateway, "GET", "/v1/events")
    assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "POST")
    assert request(running.gateway, "GET", "/v2/nothing").status == 404


def test_nothing_of_a_payload_reaches_the_logs(running: Running) -> None:
    """Accepted, invalid, refused and unparseable requests log ids, codes and paths, never a payload value."""
    marker = uuid.uuid4().hex
    accepted = example("police.domestic-abuse-incident", narrative=f"NARRATIVE-{marker}")
    invalid = example("police.domestic-abuse-incident", police_reference=f"REF-{marker}")
    invalid["children"][0]["first_name"] = ""
    mismatch = example("police.domestic-abuse-incident", producer="northdale-idva")
    with capture_logs() as logs:
        assert post(running, accepted).status == 202
        assert post(running, invalid).status == 422
        assert post(running, mismatch, agency="northdale-idva").status == 403
        assert post(running, None, raw=f'{{"secret": "{marker}"'.encode()).status == 400

    requests = [entry for entry in logs if entry["event"] == "gateway.request"]
    assert [entry["status"] for entry in requests] == [202, 422, 403, 400]
    assert requests[0]["event_id"] == accepted["event_id"]
    assert requests[0]["agency_id"] == "northdale-police"
    assert set(requests[1]["error_paths"]) == {"$.police_reference", "$.children[0].first_name"}
    text = repr(logs)
    for value in (marker, "Elsie", "Calloway", "Reuben", "Garside", "Ivy", "Larch Row", "ND4 7QX", "1991-04-12",
                  "2016-03-04", "NDP-2026-004512", "Hollowmere", "heard shouting"):
        assert value not in text, f"{value!r} was logged"


def test_credentials_are_stored_as_salted_hashes_in_a_private_file(partnership: Partnership, tmp_path: Path) -> None:
    """
    The file is 0600, holds no secret and salts each credential; a file open to others stops start-up.

    Credentials are refused for the router and for agencies missing from the directory.
    """
    path = tmp_path / "gateway" / "credentials.json"
    tokens = [add_credential(path, "northdale-police") for _ in range(2)]

    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    stored = json.loads(text)["credentials"]
    assert len({entry["salt"] for entry in stored.values()}) == 2
    for token in tokens:
        credential_id, secret = token.split(".", 1)
        assert credential_id in stored
        assert secret not in text
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Gateway(settings, path, publisher_factory=lambda agency, directory: pytest.fail("no publisher expected"))
    with pytest.raises(ConfigError, match="router"):
        add_credential(path, partnership.directory.router().id, directory=partnership.directory)
    with pytest.raises(ConfigError, match="no agency"):
        add_credential(path, "northdale-nobody", directory=partnership.directory)


def test_shutdown_before_serving_stops_at_once(partnership: Partnership, tmp_path: Path) -> None:
    """A gateway shut down before it serves closes its socket, and a later serve_forever returns immediately."""
    path = tmp_path / "credentials.json"
    add_credential(path, "northdale-police")
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    gateway = Gateway(settings, path, publisher_factory=lambda agency, directory: pytest.fail("no publisher expected"))
    gateway.shutdown()
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_accepted_events_and_refused_requests_are_counted_for_metrics(running: Running) -> None:
    """``/metrics`` of ``--health-port``: events published per ingress topic, refusals by status and reason code."""
    topic = TopicNames().ingress("northdale-police", Family.DA_INCIDENT)
    accepted = _count("safebus_gateway_events_accepted_total", topic=topic)
    refused = _count("safebus_gateway_requests_refused_total", status="415", reason="unsupported-media-type")
    missing = _count("safebus_gateway_requests_refused_total", status="404", reason="not-found")

    assert post(running, example("police.domestic-abuse-incident")).status == 202
    assert post(running, example("police.domestic-abuse-incident"), content_type="text/plain").status == 415
    assert request(running.gateway, "GET", "/v2/nothing").status == 404

    assert _count("safebus_gateway_events_accepted_total", topic=topic) == accepted + 1
    assert _count("safebus_gateway_requests_refused_total", status="415",
                  reason="unsupported-media-type") == refused + 1
    assert _count("safebus_gateway_requests_refused_total", status="404", reason="not-found") == missing + 1


def test_run_beats_its_health_and_is_ready_only_once_connected_to_the_bus(
        partnership: Partnership, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live while the serving loop runs; ready once `connected` says the bus answers, not before."""
    credentials = default_credentials_path(partnership.state_dir)
    add_credential(credentials, "northdale-police")
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    gateway = Gateway(settings, credentials, limits=GatewayLimits())
    reachable = threading.Event()
    monkeypatch.setattr(gateway, "connected", reachable.is_set)
    now = [0.0]
    health = WorkerHealth("gateway", stall_after_s=5, clock=lambda: now[0])
    stop = threading.Event()
    thread = threading.Thread(target=gateway.run, args=(stop,), kwargs={"health": health}, daemon=True)
    thread.start()
    try:
        time.sleep(1.2)
        now[0] = 4.0
        time.sleep(1.2)  # beats since: live past the first stall time
        now[0] = 8.0
        time.sleep(0.8)
        assert health.live()
        assert not health.ready()
        reachable.set()
        deadline = time.monotonic() + 10
        while not health.ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health.ready()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the gateway did not stop"


def test_an_unreachable_broker_is_not_connected(partnership: Partnership) -> None:
    """Nothing answers at 127.0.0.1:1: not connected (so not ready), within the probe's timeout."""
    credentials = default_credentials_path(partnership.state_dir)
    add_credential(credentials, "northdale-police")
    gateway = Gateway(Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames()),
                      credentials, limits=GatewayLimits())
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()  # starts the directory's watcher, which finds no broker to read from
    try:
        deadline = time.monotonic() + 15
        while not gateway._directory.caught_up and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gateway._directory.caught_up, "the directory watcher should give up on an absent topic"
        started = time.monotonic()
        assert gateway.connected() is False  # so it is the broker probe that says no
        assert time.monotonic() - started < 10
    finally:
        gateway.shutdown()
        thread.join(timeout=10)

"""
One request's path through the gateway: authenticate, validate, authorise, publish, and the status of each refusal.

Split from the HTTP plumbing (`safebus.producers.gateway.server`) because this
is what a supplier sees: which payload is accepted and which status and error
code a refusal gets. None of it knows about sockets, so it is read and tested
as the contract it is.

- **One publisher per agency, rebuilt when the directory changes.** Rebuilding
  means rotated keys, for the agency or the router, and revocations apply
  without a restart. Only one publish runs at a time per agency. The confluent
  producer serves delivery reports to whichever thread flushes, so serialising
  keeps each request's error report its own.
- **202, not 201.** The event is accepted onto the bus. The routing decision
  comes later, on the audit topic.
- **503 means "not known to be published".** After a broker timeout, the
  record may still arrive. The caller chose the event id, and the router routes
  each event id only once, so sending the same payload again is safe, and that
  is the advice the 503 gives.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import KafkaException
from pydantic import ValidationError

from safebus import bounded_json
from safebus.directory import Agency, AgencyKind, Directory, KeyStatus
from safebus.errors import BrokerError, ConfigError, EnvelopeError, InvalidEnvelope
from safebus.keyservice import KeyService, SubjectKey
from safebus.limits import MAX_EVENT_JSON_BYTES, MAX_JSON_DEPTH
from safebus.logs import get_logger
from safebus.metrics import GATEWAY_ACCEPTED
from safebus.producers.gateway.credentials import CredentialStore
from safebus.producers.gateway.limits import GatewayLimits, TokenBuckets
from safebus.producers.police import PolicePublisher
from safebus.publisher import AgencyPublisher
from safebus.schemas._base import Event
from safebus.schemas.registry import by_type
from safebus.schemas.validation import Issue, json_path, validate_payload
from safebus.settings import Settings, directory_source, key_service_for, tokeniser_for

__all__ = [
    "MAX_BODY_BYTES", "EventPublisher", "Ingest", "PublisherFactory", "Reply", "ServedPublisher",
    "agency_publishers",
]

MAX_BODY_BYTES = MAX_EVENT_JSON_BYTES
"""Largest request body accepted (`safebus.limits`: sealed, it fits a record): an incident is a few tens of KiB."""

_log = get_logger("producers.gateway")


class EventPublisher(Protocol):
    """What the gateway needs of a publisher (`AgencyPublisher` is one; tests inject fakes)."""

    def topic_for(self, event_type: str) -> str:
        """The ingress topic for `event_type`; raises EnvelopeError if this agency may not publish it."""
        ...

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Seal and publish `events`, returning their ids once the broker has them; BrokerError otherwise."""
        ...


@runtime_checkable
class ServedPublisher(Protocol):
    """A publisher whose client queues events that must be served while it is idle (`AgencyPublisher`)."""

    def serve_events(self) -> None:
        """Serve queued client events without publishing."""
        ...


PublisherFactory = Callable[[Agency, Directory], EventPublisher]
"""
Builds one agency's publisher from its entry in the current directory.

The gateway calls it on the agency's first request and again after each
directory change. Raises ConfigError if it cannot sign for the agency.
"""


class _SerialKeyService:
    """
    A key service whose key creation is serialised across the gateway's threads.

    `FileKeyService` creates a key file before writing the key into it, so a
    second thread can read an empty key in that moment. Two agencies that post
    about the same person at the same time would trigger it.
    """

    def __init__(self, inner: KeyService) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def subject_key(self, token: str, period: str) -> SubjectKey:
        """Return (creating if needed) the subject's key for `period`."""
        with self._lock:
            return self._inner.subject_key(token, period)

    def lookup(self, key_id: str) -> bytes | None:
        """Return a key's secret, or None."""
        return self._inner.lookup(key_id)

    def erase_subject(self, token: str) -> list[str]:
        """Destroy every key of `token`."""
        with self._lock:
            return self._inner.erase_subject(token)


def agency_publishers(settings: Settings) -> PublisherFactory:
    """
    Real Kafka publishers for the partnership in `settings`, sharing one tokeniser and key service.

    A police force gets a `PolicePublisher`, which keys incidents by police
    reference, so that updates to one incident stay in order on one partition,
    as they do from the force's own adapter. Each agency signs with its current
    local key. The factory refuses a key that the directory does not accept
    (rotated elsewhere, retired, revoked), rather than publishing events the
    router would dead-letter.
    """
    tokeniser = tokeniser_for(settings.state_dir)
    subject_keys = _SerialKeyService(key_service_for(settings.state_dir))

    def build(agency: Agency, directory: Directory) -> EventPublisher:
        keys = settings.store.private_keys(agency.id)
        try:
            directory.signing_key(agency.id, keys.public().signing_key_id)
        except InvalidEnvelope as exc:
            raise ConfigError(f"the local signing key of {agency.id} is not accepted by the directory: "
                              f"{exc.reason}") from exc
        kind = PolicePublisher if agency.kind is AgencyKind.POLICE else AgencyPublisher
        return kind(bootstrap=settings.bootstrap, agency=keys, kind=agency.kind,
                    router=directory.router().public_keys(), names=settings.names, tokeniser=tokeniser,
                    keys=subject_keys)

    return build


@dataclass
class _Slot:
    """An agency's publisher, the directory it was built from, and the lock that serialises its publishes."""

    publisher: EventPublisher
    directory: Directory
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Refusal(Exception):
    """A request the gateway answers with an error status, not a bug."""

    def __init__(self, status: int, code: str, message: str, *, issues: Sequence[Issue] = (),
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(code)
        self.reply = Reply(status, {"error": code, "message": message,
                                    **({"errors": [{"path": i.path, "message": i.message} for i in issues]}
                                       if issues else {})}, headers)
        self.issues = tuple(issues)


def _unauthenticated() -> _Refusal:
    """The one 401: the same whether the header, the credential id or the secret was wrong, or it was revoked."""
    return _Refusal(401, "unauthenticated", "a valid bearer credential is required",
                    headers=(("WWW-Authenticate", 'Bearer realm="safebus"'),))


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, "payload-too-large", f"bodies are limited to {limit} bytes")


def _parse_json(body: bytes) -> object:
    """The JSON value in `body` (UTF-8, standard JSON only, within `safebus.limits`); a 400 refusal otherwise."""
    try:
        return bounded_json.loads(body, max_bytes=MAX_EVENT_JSON_BYTES)
    except bounded_json.JsonRefused as exc:
        detail = _JSON_REFUSALS.get(exc.reason, exc.reason)
        raise _Refusal(400, "invalid-json", f"the body is not valid UTF-8 JSON: {detail}",
                       issues=[Issue("$", detail)]) from None


_JSON_REFUSALS = {
    "too-deep": f"nested more than {MAX_JSON_DEPTH} levels deep",
    "invalid-utf8": "not valid UTF-8 (or a lone surrogate escape)",
    "malformed": "not standard JSON",
    "too-large": f"larger than {MAX_EVENT_JSON_BYTES} bytes",
}


def _is_json(content_type: str | None) -> bool:
    media, *params = (content_type or "").split(";")
    pairs = [param.strip().lower().partition("=") for param in params]
    charsets = [value.strip('"') for name, _, value in pairs if name == "charset"]
    return media.strip().lower() == "application/json" and all(c == "utf-8" for c in charsets)



class Ingest:
    """
    What the gateway does with one request, apart from HTTP: `accept` it or refuse it with a status.

    `publisher_factory` replaces the real Kafka publishers, for tests.
    `limits` bounds each credential's rate (default `GatewayLimits.from_env()`);
    `request_timeout_s`, if given, overrides its request deadline.
    """

    def __init__(self, settings: Settings, credentials_path: Path, *, publisher_factory: PublisherFactory | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, request_timeout_s: float | None = None,
                 limits: GatewayLimits | None = None) -> None:
        """Load credentials and the directory now, so that misconfiguration fails at start-up, not per request."""
        self.settings = settings
        self.credentials = CredentialStore(credentials_path)
        settings.store.load_directory()  # a missing or unverifiable directory fails here, with advice
        self._directory = directory_source(settings.store)
        self.max_body_bytes = max_body_bytes
        limits = limits or GatewayLimits.from_env()
        if request_timeout_s is not None:
            limits = GatewayLimits(**{**vars(limits), "request_timeout_s": request_timeout_s})
        self.limits = limits
        self.request_timeout_s = limits.request_timeout_s
        self._buckets = TokenBuckets(rate_per_s=limits.rate_per_s, burst=limits.burst)
        self._factory = publisher_factory or agency_publishers(settings)
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()

    def serve_idle_publishers(self) -> None:
        """
        Serve the client events of every publisher not publishing right now.

        Why: a publish serves its producer's queue, but between requests nothing
        does, and with the broker away librdkafka's queued errors grow an idle
        gateway by kilobytes a second. A publisher busy with a request is
        skipped: that request serves it.
        """
        with self._slots_lock:
            slots = list(self._slots.values())
        for slot in slots:
            if isinstance(slot.publisher, ServedPublisher) and slot.lock.acquire(blocking=False):
                try:
                    slot.publisher.serve_events()
                finally:
                    slot.lock.release()

    def _slot(self, agency_id: str) -> _Slot:
        """
        The authenticated agency's publisher, built on its first request and rebuilt when the directory changes.

        Rebuilding picks up rotated keys, for the agency and for the router, and
        applies revocations. An agency with no active key is refused, as the
        router would refuse its events.
        """
        directory = self._directory()
        with self._slots_lock:
            slot = self._slots.get(agency_id)
            if slot is not None and slot.directory is directory:
                return slot
            agency = directory.get(agency_id)
            if agency is None:
                raise _Refusal(403, "agency-unknown", "this agency is not in the partnership directory")
            if agency.kind is AgencyKind.ROUTER:
                raise _Refusal(403, "agency-not-permitted", "the router does not publish through the gateway")
            if not any(generation.status is KeyStatus.ACTIVE for generation in agency.keys):
                raise _Refusal(403, "agency-not-permitted", "the partnership directory holds no active key for "
                               "this agency")
            try:
                publisher = self._factory(agency, directory)
            except ConfigError as exc:
                _log.error("gateway.cannot_sign", agency_id=agency_id, error=str(exc))
                raise _Refusal(503, "signing-unavailable", "the gateway cannot sign for your agency at the moment",
                               headers=(("Retry-After", "60"),)) from None
            slot = self._slots[agency_id] = _Slot(publisher, directory)
            return slot

    def accept(self, *, authorization: str | None, content_type: str | None, body: bytes,
               trace: dict[str, object]) -> Reply:
        """
        Authenticate, validate, authorise and publish one event. Raises `_Refusal` for every non-202 answer.

        Puts only loggable facts (ids, codes, JSON paths) into `trace`.
        """
        who = self.credentials.authenticate(authorization)
        if who is None:
            raise _unauthenticated()
        credential_id, credential = who
        agency_id = credential.agency_id
        trace.update(credential_id=credential_id, agency_id=agency_id)
        wait = self._buckets.take(credential_id)
        if wait > 0:
            raise _Refusal(429, "rate-limited", f"more than {self.limits.rate_per_s:g} requests a second with this "
                           "credential; retry after the time in Retry-After",
                           headers=(("Retry-After", str(max(1, math.ceil(wait)))),))
        if not _is_json(content_type):
            raise _Refusal(415, "unsupported-media-type", "send the payload as application/json (UTF-8)")
        payload = _parse_json(body)
        issues = validate_payload(payload)
        if issues:
            raise _Refusal(422, "invalid-payload", f"{len(issues)} problem(s) with the payload", issues=issues)
        assert isinstance(payload, dict)  # validate_payload accepts only objects
        if payload["producer"] != agency_id:
            raise _Refusal(403, "producer-mismatch", f"the payload's producer must be your agency, {agency_id}")
        event_type = str(payload["event_type"])
        trace.update(event_id=str(payload["event_id"]), event_type=event_type)
        slot = self._slot(agency_id)
        try:
            topic = slot.publisher.topic_for(event_type)
        except EnvelopeError:
            raise _Refusal(403, "event-type-not-permitted", f"your agency may not publish {event_type}") from None
        spec = by_type(event_type)
        assert spec is not None  # validate_payload checked the type
        try:
            event = spec.model.model_validate_json(body)  # JSON mode: the strict models parse dates from strings
        except ValidationError as exc:  # an older released version the current model does not read
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            raise _Refusal(422, "invalid-payload", "the payload does not fit the current contract",
                           issues=[Issue(json_path(list(e["loc"])), e["msg"]) for e in errors]) from None
        try:
            with slot.lock:
                [event_id] = slot.publisher.publish([event])
        except (BrokerError, KafkaException, BufferError) as exc:
            trace.update(broker_error=type(exc).__name__)
            raise _Refusal(503, "bus-unavailable", "the bus did not confirm the event; retry with the same event_id",
                           headers=(("Retry-After", "5"),)) from None
        GATEWAY_ACCEPTED.labels(topic=topic).inc()
        return Reply(202, {"event_id": event_id})


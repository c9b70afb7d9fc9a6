"""
The ingress gateway: an HTTP front door for agency systems that cannot speak Kafka.

An agency system POSTs a plain JSON payload to ``/v1/events`` with its bearer
credential. The gateway checks it against the contract the payload names (the
published JSON Schema, then the model's cross-field rules: the same check as
``safebus schemas validate``), and checks that the payload is the caller's own
(``producer``) and of a contract the caller's kind may publish. Then it signs
and encrypts the event *on that agency's behalf* with the agency's keys and
publishes it to the agency's ingress topic with `AgencyPublisher`. It answers
``202 {"event_id": ...}`` once the broker has the record (acks=all), or a 4xx
that names every problem, so a supplier can fix the payload in one round trip.

Why it is built this way:

- **stdlib ``ThreadingHTTPServer``, not aiohttp.** Every step after parsing
  blocks: scrypt, sealing, and `produce_all`, which waits for the broker's
  acknowledgement. A bounded pool of kept worker threads fits that; an event
  loop would only pass each step to an executor. It also adds no dependency to the one part of
  the bus that faces other organisations' networks.
- **Loopback, plain HTTP.** Run it behind a TLS-terminating reverse proxy.
  Bearer tokens must never cross a network in the clear.
- **Bounded** (`safebus.producers.gateway_limits`): a cap on connections
  (in total and per source; over it, an immediate 503 without a thread), a
  deadline for each whole request, and a token bucket per credential (429
  with ``Retry-After``). Keep-alive is allowed, with a short idle timeout
  and a cap on requests per connection; on shutdown idle connections are
  closed at once, so shutdown waits only for requests in flight.
- **Credentials.** Each credential holds a random 256-bit secret. The file
  stores only its scrypt hash, with a per-credential salt, in mode 0600. Hashes
  are compared in constant time. An unknown credential id still costs one
  scrypt, so a 401 looks and takes the same whether the id or the secret was
  wrong. Once a secret is verified, its SHA-256 is kept in memory only, bound to
  the stored hash. An agency's steady traffic therefore costs one scrypt, not
  one per request. The file is re-read whenever it changes, so a revocation
  applies from the next request without a restart.
- **One publisher per agency, rebuilt when the directory changes.** Rebuilding
  means rotated keys, for the agency or the router, and revocations apply
  without a restart. Only one publish runs at a time per agency. The confluent
  producer serves delivery reports to whichever thread flushes, so serialising
  keeps each request's error report its own.
- **202, not 201.** The event is accepted onto the bus. The routing decision
  comes later, on the audit topic.
- **503 means "not known to be published".** After a broker timeout, the
  record may still arrive. The caller chose the event id, and the router routes
  each event id only once: a second record with the same id is dropped as a
  duplicate. Sending the same payload again is therefore safe, and that is the
  advice the 503 gives.
- **Payloads are never logged.** A log line carries the path, status, agency
  id, credential id, the validated event id, a reason code and the JSON paths
  of errors. It never carries values or validator messages, because
  ``jsonschema`` quotes the offending value in its messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import ipaddress
import json
import math
import queue
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast

from confluent_kafka import KafkaException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus import bounded_json
from safebus.account_files import exclusive_lock, refuse_open_to_others, write_private_json
from safebus.directory import Agency, AgencyKind, Directory, KeyStatus
from safebus.errors import BrokerError, ConfigError, EnvelopeError, InvalidEnvelope
from safebus.keyservice import KeyService, SubjectKey
from safebus.limits import MAX_EVENT_JSON_BYTES, MAX_JSON_DEPTH
from safebus.live_directory import follow
from safebus.logs import get_logger
from safebus.passwords import ScryptHash, Verifier, hash_secret
from safebus.producers.gateway_limits import BUSY_RESPONSE, Admission, DeadlineReader, GatewayLimits, TokenBuckets
from safebus.producers.police import PolicePublisher
from safebus.publisher import AgencyPublisher
from safebus.schemas._base import AgencyId, Event
from safebus.schemas.registry import by_type
from safebus.schemas.validation import Issue, json_path, validate_payload
from safebus.settings import Settings, directory_source, key_service_for, tokeniser_for

__all__ = [
    "MAX_BODY_BYTES", "Credential", "EventPublisher", "Gateway", "GatewayLimits", "PublisherFactory", "add_credential",
    "agency_publishers", "default_credentials_path", "revoke_credential",
]

MAX_BODY_BYTES = MAX_EVENT_JSON_BYTES
"""Largest request body accepted (`safebus.limits`: sealed, it fits a record): an incident is a few tens of KiB."""

_LINGER_BYTES, _LINGER_S = 4 << 20, 2.0
"""After an early answer, read at most this much of an unwanted body, for at most this long, before closing."""

EVENTS_PATH = "/v1/events"
HEALTH_PATH = "/v1/health"

_log = get_logger("producers.gateway")


# --------------------------------------------------------------------------- credentials

_CREDENTIAL_ID = re.compile(r"^cred-[0-9a-f]{16}$")


class Credential(ScryptHash):
    """One agency credential as stored: never the secret, only its salted scrypt hash (`safebus.passwords`)."""

    trailing_fields: ClassVar[tuple[str, ...]] = ("created_at", "revoked_at")

    agency_id: AgencyId
    created_at: datetime
    revoked_at: datetime | None = None


class CredentialFile(BaseModel):
    """The credentials file: credential id -> `Credential`. Revoked entries stay, for the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["safebus-gateway-credentials/1"] = "safebus-gateway-credentials/1"
    credentials: dict[str, Credential] = Field(default_factory=dict)


def default_credentials_path(state_dir: Path) -> Path:
    """Where the gateway's credentials live in a state directory."""
    return state_dir / "gateway" / "credentials.json"


def _read(path: Path) -> CredentialFile:
    """Read the credentials file. Raises ConfigError if it is missing, malformed or open to other users."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"no gateway credentials at {path}; add one with 'safebus gateway credential add'") from exc
    refuse_open_to_others(path, mode, "gateway credentials")
    try:
        return CredentialFile.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid gateway credentials {path}: {exc.error_count()} errors") from exc


@contextmanager
def _locked(path: Path) -> Iterator[CredentialFile]:
    """Hold the file's lock for a read-modify-write and yield its content (empty if there is no file yet)."""
    with exclusive_lock(path):
        yield _read(path) if path.exists() else CredentialFile()


def add_credential(path: Path, agency_id: str, *, directory: Directory | None = None,
                   now: datetime | None = None) -> str:
    """
    Create a credential for `agency_id` and return its bearer token, ``<credential id>.<secret>``.

    The token is shown only this once: the file keeps just the salted hash.
    Given the partnership `directory` (the CLI always passes it), it refuses an
    agency that is not in it, and it refuses the router. The router's key signs
    decisions and alerts, which nobody may submit through a gateway.
    """
    if directory is not None:
        agency = directory.get(agency_id)
        if agency is None:
            raise ConfigError(f"no agency {agency_id!r} in the partnership directory")
        if agency.kind is AgencyKind.ROUTER:
            raise ConfigError("the router cannot have a gateway credential")
    credential_id = f"cred-{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    try:
        credential = Credential.model_validate({"agency_id": agency_id, **hash_secret(secret),
                                                "created_at": now or datetime.now(UTC)})
    except ValidationError as exc:
        raise ConfigError(f"not an agency id: {agency_id!r}") from exc
    with _locked(path) as current:
        write_private_json(path, CredentialFile(credentials={**current.credentials, credential_id: credential}))
    return f"{credential_id}.{secret}"


def revoke_credential(path: Path, credential_id: str, *, now: datetime | None = None) -> None:
    """Revoke a credential from the next request on. The entry stays, with its revocation time, as a record."""
    with _locked(path) as current:
        credential = current.credentials.get(credential_id)
        if credential is None:
            raise ConfigError(f"no gateway credential {credential_id!r} in {path}")
        if credential.revoked_at is not None:
            return
        revoked = credential.model_copy(update={"revoked_at": now or datetime.now(UTC)})
        write_private_json(path, CredentialFile(credentials={**current.credentials, credential_id: revoked}))


class _Credentials:
    """The credentials file as the running gateway sees it: re-read when it changes, verified per request."""

    def __init__(self, path: Path) -> None:
        """Load `path` now. A missing, malformed or world-readable file is a ConfigError at start-up."""
        self.path = path
        self._lock = threading.Lock()
        self._verifier = Verifier()
        self._stamp: tuple[int, int, int] | None = None
        self._content = CredentialFile()
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._current(strict=True)

    def _current(self, *, strict: bool = False) -> CredentialFile:
        """The file's content, re-read if it changed. After start-up a bad file fails closed (no credentials)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            with self._lock:
                if stamp != self._stamp:
                    self._content, self._stamp = _read(self.path), stamp
                return self._content
        except (OSError, ConfigError) as exc:
            if strict:
                raise ConfigError(str(exc)) from exc
            _log.error("gateway.credentials_unreadable", path=str(self.path), error=type(exc).__name__)
            with self._lock:
                self._content, self._stamp = CredentialFile(), None
            return self._content

    def authenticate(self, authorization: str | None) -> tuple[str, Credential] | None:
        """The (credential id, credential) a bearer ``Authorization`` header proves, or None."""
        parts = (authorization or "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        credential_id, _, secret = parts[1].partition(".")
        if not _CREDENTIAL_ID.match(credential_id) or not secret:
            return None
        stored = self._current().credentials.get(credential_id)
        if stored is None:
            self._verifier.verify(None, secret)  # the same work as a wrong secret: timing tells nothing
            return None
        fingerprint = hashlib.sha256(secret.encode()).digest()
        remembered = self._verified.get(credential_id)
        if remembered is not None and remembered[0] == stored.hash and hmac.compare_digest(remembered[1], fingerprint):
            valid = True
        else:
            valid = self._verifier.verify(stored, secret)
            if valid:
                self._verified[credential_id] = (stored.hash, fingerprint)
        if stored.revoked_at is not None:
            self._verified.pop(credential_id, None)
            return None
        return (credential_id, stored) if valid else None


# --------------------------------------------------------------------------- publishing

class EventPublisher(Protocol):
    """What the gateway needs of a publisher (`AgencyPublisher` is one; tests inject fakes)."""

    def topic_for(self, event_type: str) -> str:
        """The ingress topic for `event_type`; raises EnvelopeError if this agency may not publish it."""
        ...

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Seal and publish `events`, returning their ids once the broker has them; BrokerError otherwise."""
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


# --------------------------------------------------------------------------- requests

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


def _frames(exc: BaseException) -> list[str]:
    """Where an unexpected error happened (file, line, function) without its message, which may quote data."""
    return [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)][-8:]


class Gateway:
    """
    The ingress gateway: construct, then `serve_forever()` (or `run(stop)`), then `shutdown()`.

    `port=0` picks a free port, which `address` reports. `publisher_factory`
    replaces the real Kafka publishers, for tests. `limits` bounds
    connections, request time and each credential's rate (default
    `GatewayLimits.from_env()`); `request_timeout_s`, if given, overrides its
    request deadline.
    """

    def __init__(self, settings: Settings, credentials_path: Path, *, host: str = "127.0.0.1", port: int = 0,
                 publisher_factory: PublisherFactory | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 request_timeout_s: float | None = None, limits: GatewayLimits | None = None) -> None:
        """Load credentials and the directory now, so that misconfiguration fails at start-up, not per request."""
        self.settings = settings
        self.credentials = _Credentials(credentials_path)
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
        self._state = threading.Lock()
        self._closing = False
        self._serving: int | None = None
        self._stopped = threading.Event()
        self._server = _Server((host, port), _Handler, gateway=self)
        if not ipaddress.ip_address(self.address[0]).is_loopback:
            _log.warning("gateway.not_loopback", host=self.address[0],
                         advice="bearer tokens travel in clear: put a TLS-terminating proxy in front")

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the gateway listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def closing(self) -> bool:
        """Whether `shutdown()` has been asked for (replies then close their connections)."""
        return self._closing

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host, port = self.address
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until `shutdown()`; then wait for requests in flight to finish and close."""
        with self._state:
            if self._closing:
                return
            self._serving = threading.get_ident()
        # Agencies, rotations and retirements published while it serves apply to the next request.
        follow(self._directory, bootstrap=self.settings.bootstrap, topic=self.settings.names.agencies)
        _log.info("gateway.listening", url=self.url)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.close_idle()  # kept-alive connections waiting for a next request end now
            self._server.server_close()  # joins request threads: in-flight publishes complete
            self._directory.close()
            self._stopped.set()
            _log.info("gateway.stopped")

    def shutdown(self) -> None:
        """
        Stop serving. Safe from any thread, and before `serve_forever()` has run.

        Called from another thread, it returns once the server has closed.
        Called from the serving thread (a signal handler, say), it only asks the
        server to stop.
        """
        with self._state:
            self._closing = True
            serving = self._serving
        if serving is None:
            self._server.server_close()
        elif serving == threading.get_ident():
            threading.Thread(target=self._server.shutdown, name="gateway-shutdown", daemon=True).start()
        else:
            self._server.shutdown()
            self._stopped.wait()

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (the CLI sets it from SIGTERM/SIGINT), then shut down."""
        thread = threading.Thread(target=self.serve_forever, name="gateway", daemon=True)
        thread.start()
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
        self.shutdown()
        thread.join()

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
            slot.publisher.topic_for(event_type)
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
        return Reply(202, {"event_id": event_id})


# --------------------------------------------------------------------------- HTTP plumbing

class _Server(ThreadingHTTPServer):
    """
    A bounded pool of worker threads, at most `GatewayLimits.max_connections`; connections over it get a quick 503.

    Workers are started as needed and then kept: the same validation and
    sealing run from ever new threads grew native memory (docs/adr/0007).
    Workers are not daemons, so `server_close()` waits for publishes in flight.
    """

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, gateway: Gateway) -> None:
        self.gateway = gateway
        self.admission = Admission(gateway.limits)
        self._idle: set[socket.socket] = set()
        self._idle_lock = threading.Lock()
        self._busy_logged = 0.0
        self._work: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._pool_lock = threading.Lock()
        self._waiting_workers = 0
        self._queued = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a worker if the caps allow; otherwise answer 503 from this (accepting) thread."""
        source = str(client_address[0])
        if not self.admission.admit(source):
            self._refuse_busy(request)
            return
        with self._pool_lock:
            self._queued += 1
            if self._queued > self._waiting_workers and len(self._workers) < self.gateway.limits.max_connections:
                worker = threading.Thread(target=self._worker, name=f"gateway-worker-{len(self._workers)}")
                self._workers.append(worker)
                worker.start()
        self._work.put((request, client_address))

    def _worker(self) -> None:
        """Serve connections from the queue until told to stop (None)."""
        while True:
            with self._pool_lock:
                self._waiting_workers += 1
            item = self._work.get()
            with self._pool_lock:
                self._waiting_workers -= 1
                self._queued -= item is not None
            if item is None:
                return
            self.process_request_thread(*item)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.admission.release(str(client_address[0]))

    def server_close(self) -> None:
        """Close the listening socket, then let every worker finish its connection and stop."""
        super().server_close()
        with self._pool_lock:
            workers = list(self._workers)
        for _ in workers:
            self._work.put(None)
        for worker in workers:
            worker.join()

    def _refuse_busy(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(BUSY_RESPONSE)
        except OSError:
            pass  # its buffer is full or it has gone: it is closed either way
        finally:
            self.shutdown_request(request)
        now = time.monotonic()
        if now - self._busy_logged > 10:  # one line per 10 s under a flood, with the running count
            self._busy_logged = now
            _log.warning("gateway.busy", refused_connections=self.admission.refused,
                         max_connections=self.gateway.limits.max_connections)

    def idle(self, connection: socket.socket, waiting: bool) -> bool:
        """Mark a kept-alive connection as waiting (or not) for its next request; False if shutting down."""
        with self._idle_lock:
            if waiting:
                self._idle.add(connection)
            else:
                self._idle.discard(connection)
        return not self.gateway.closing

    def close_idle(self) -> None:
        """End every connection waiting for a next request: their threads see end of stream and finish."""
        with self._idle_lock:
            waiting = list(self._idle)
        for connection in waiting:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a broken connection or bug by type and location; the default prints to stderr."""
        exc = sys.exc_info()[1]
        _log.error("gateway.connection_error", error=type(exc).__name__, frames=_frames(exc) if exc else [])


class _Handler(BaseHTTPRequestHandler):
    """Maps HTTP onto `Gateway.accept`; keeps a connection alive only after a request it read whole."""

    server_version = "safebus-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # answers ``Expect: 100-continue`` and allows keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: without this a kept-alive reply waits 40 ms

    @property
    def gateway(self) -> Gateway:
        return cast(_Server, self.server).gateway

    def setup(self) -> None:
        """Read through a deadline, so a slow client cannot hold a thread past its request's time."""
        super().setup()
        self.connection.settimeout(self.gateway.request_timeout_s)  # writes: a client that never reads
        self.rfile.close()  # the stdlib's reader, replaced by one that keeps the deadline
        self._reader = DeadlineReader(self.connection)
        self._buffered = io.BufferedReader(self._reader, 65536)
        self.rfile = self._buffered
        self._unread = 0  # body bytes the client may still be sending when we answer early
        self._served = 0
        self._reusable = False

    def handle_one_request(self) -> None:
        """Wait for the next request (briefly, on a kept-alive connection), then handle it within its deadline."""
        limits = self.gateway.limits
        self._reusable = False
        self._reader.deadline = time.monotonic() + (limits.request_timeout_s if self._served == 0
                                                    else limits.keepalive_idle_s)
        server = cast(_Server, self.server)
        if self._served and not server.idle(self.connection, True):
            self.close_connection = True
            return
        try:
            self._buffered.peek(1)  # the first byte of the next request, or end of stream / timeout
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        finally:
            if self._served:
                server.idle(self.connection, False)
        super().handle_one_request()
        self._served += 1

    def parse_request(self) -> bool:
        """The request has begun: all of it (headers, body) must arrive within the request deadline from now."""
        if self._served:
            self._reader.deadline = time.monotonic() + self.gateway.limits.request_timeout_s
        return super().parse_request()

    def version_string(self) -> str:
        """``Server: safebus-gateway``, without the Python version."""
        return self.server_version

    def handle_expect_100(self) -> bool:
        """Refuse an oversize body before the client sends it, when the client asks first."""
        declared = self.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > self.gateway.max_body_bytes:
            self._respond(_too_large(self.gateway.max_body_bytes).reply, path=self._route())
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's access log: `_respond` writes a structured line instead."""

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        """Health check; the events path only takes POST."""
        path = self._route()
        self._reusable = not self.headers.get("Content-Length", "0").strip("0 ") and \
            not self.headers.get("Transfer-Encoding")
        if path == HEALTH_PATH:
            self._respond(Reply(200, {"status": "ok"}), path=path)
        elif path == EVENTS_PATH:
            self._respond(Reply(405, {"error": "method-not-allowed", "message": "POST events"}, (("Allow", "POST"),)),
                          path=path)
        else:
            self._respond(Reply(404, {"error": "not-found", "message": "no such endpoint"}), path=path)

    def do_POST(self) -> None:
        """Read the body within limits, then hand it to the gateway."""
        path = self._route()
        trace: dict[str, object] = {}
        if path != EVENTS_PATH:
            self._respond(Reply(404, {"error": "not-found", "message": "no such endpoint"}), path=path)
            return
        try:
            body = self._body()
            self._reusable = True  # read whole: the connection may carry the next request
            reply = self.gateway.accept(authorization=self.headers.get("Authorization"),
                                        content_type=self.headers.get("Content-Type"), body=body, trace=trace)
        except _Refusal as refusal:
            reply = refusal.reply
            if refusal.issues:
                trace["error_paths"] = [issue.path for issue in refusal.issues][:50]
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not drop the connection
            trace.update(error=type(exc).__name__, frames=_frames(exc))
            reply = Reply(500, {"error": "internal", "message": "the gateway failed; the event was not published"})
        self._respond(reply, path=path, trace=trace)

    def _body(self) -> bytes:
        """The request body, refusing what is too large, of no declared length, or cut short."""
        declared = self.headers.get("Content-Length")
        self._unread = _LINGER_BYTES
        if self.headers.get("Transfer-Encoding") or declared is None:
            raise _Refusal(411, "length-required", "send the body with a Content-Length (not chunked)")
        if not declared.strip().isdigit():
            raise _Refusal(400, "bad-content-length", "Content-Length must be a non-negative integer")
        length = int(declared)
        if length > self.gateway.max_body_bytes:
            self._unread = min(length, _LINGER_BYTES)
            raise _too_large(self.gateway.max_body_bytes)
        self._unread = 0
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise _Refusal(408, "request-timeout", "the body did not arrive in time") from None
        if len(body) != length:
            raise _Refusal(400, "incomplete-body", "the body is shorter than its Content-Length")
        return body

    def _respond(self, reply: Reply, *, path: str, trace: dict[str, object] | None = None) -> None:
        """Log the request (before answering, so the line exists once the client has its answer), then answer."""
        facts = {"reason": reply.body["error"]} if "error" in reply.body else {}
        level = _log.error if reply.status >= 500 else _log.info
        level("gateway.request", method=self.command, path=path, status=reply.status, **facts, **(trace or {}))
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        keep = (self._reusable and not self.close_connection and not self.gateway.closing
                and self._served + 1 < self.gateway.limits.max_requests_per_connection)
        self.send_header("Connection", "keep-alive" if keep else "close")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self._unread:
            self._linger(self._unread)

    def _linger(self, limit: int) -> None:
        """
        Read and drop what the client is still sending (up to `limit` bytes, briefly) before closing.

        Closing a socket with unread data sends a reset, and a reset can destroy
        the 413 before the client reads it.
        """
        deadline = time.monotonic() + _LINGER_S
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while limit > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.connection.recv(min(limit, 65536))
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass  # the client went away: nothing left to protect

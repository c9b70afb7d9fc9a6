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
- **Bounded** (`safebus.producers.gateway.limits`): a cap on connections
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
- **Publishing and its statuses** (one publisher per agency, 202, what a 503
  means): see `safebus.producers.gateway.ingest`.
- **Payloads are never logged.** A log line carries the path, status, agency
  id, credential id, the validated event id, a reason code and the JSON paths
  of errors. It never carries values or validator messages, because
  ``jsonschema`` quotes the offending value in its messages.

The package is split by job, each module with its own why:
`credentials` (issue, store and check bearer credentials), `ingest` (request
-> validation -> publish, and the status of each refusal), `server` (HTTP
server, connection caps, deadlines, keep-alive, worker pool) and `limits` (the
bounds as data, the token buckets and the deadline reader). This module
re-exports what the CLI, the bench and the tests import.
"""

from __future__ import annotations

from safebus.producers.gateway.credentials import (
    Credential,
    CredentialFile,
    add_credential,
    default_credentials_path,
    revoke_credential,
)
from safebus.producers.gateway.ingest import MAX_BODY_BYTES, EventPublisher, PublisherFactory, agency_publishers
from safebus.producers.gateway.limits import GatewayLimits
from safebus.producers.gateway.server import EVENTS_PATH, HEALTH_PATH, Gateway

__all__ = [
    "EVENTS_PATH", "HEALTH_PATH", "MAX_BODY_BYTES", "Credential", "CredentialFile", "EventPublisher", "Gateway",
    "GatewayLimits", "PublisherFactory", "add_credential", "agency_publishers", "default_credentials_path",
    "revoke_credential",
]

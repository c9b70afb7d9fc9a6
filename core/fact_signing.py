"""
Signed audit facts: every record on the audit topic says which of the partnership's components wrote it.

The audit topic is writable by anyone who can reach the broker, so a fact's
content alone proves nothing about where it came from.  Each of the
partnership's own components — the router and the services listed in
`Service` — holds an Ed25519 key published in the signed agency directory
(kind ``router`` or ``service``), and signs every fact it publishes.  The
audit sequencer appends a fact only if its signature verifies against a key
the directory accepts for that signer; anything else becomes a dead letter
(and that dead letter a fact).  Format (``safebus-fact-signature/1``, also in
docs/envelope.md §7): three record headers,

    safebus.fact.signer     the signer's directory id (``safebus-inbox-worker``)
    safebus.fact.key_id     the key id of its Ed25519 key (as in the envelope)
    safebus.fact.signature  unpadded base64url Ed25519 signature over
                            b"safebus-fact-signature/1\\n" + topic + b"\\n" + value

where topic is the UTF-8 audit topic name and value the record value's exact
bytes: a fact copied to another topic, or with any byte changed, fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property

from confluent_kafka import Producer
from cryptography.exceptions import InvalidSignature

from safebus.b64 import b64d, b64e
from safebus.directory import AgencyKind, Directory, PartnershipStore
from safebus.errors import ConfigError, InvalidEnvelope, SafebusError
from safebus.kafka_io import Publisher, produce_all, reliable_producer
from safebus.keys import PrivateKeys
from safebus.records import Output, Record

__all__ = [
    "FACT_KEY_ID",
    "FACT_SIGNATURE",
    "FACT_SIGNATURE_FORMAT",
    "FACT_SIGNER",
    "SIGNER_KINDS",
    "FactPublisher",
    "FactSigner",
    "Service",
    "UnattributedFact",
    "fact_publisher",
    "fact_signer",
    "signed_bytes",
    "verify_fact",
]

FACT_SIGNATURE_FORMAT = "safebus-fact-signature/1"
FACT_SIGNER = "safebus.fact.signer"
FACT_KEY_ID = "safebus.fact.key_id"
FACT_SIGNATURE = "safebus.fact.signature"
_HEADERS = frozenset({FACT_SIGNER, FACT_KEY_ID, FACT_SIGNATURE})

SIGNER_KINDS = frozenset({AgencyKind.ROUTER, AgencyKind.SERVICE})
"""Directory kinds whose keys may sign facts: the partnership's own components, never a member agency."""


class Service(StrEnum):
    """The partnership's own services that publish audit facts (the router is its own directory kind)."""

    INBOX_WORKER = "inbox-worker"
    QUEUE_WORKER = "queue-worker"
    DEADLINE_MONITOR = "deadline-monitor"
    GATEWAY = "gateway"
    INBOX_WEB = "inbox-web"
    AUDIT_WEB = "audit-web"
    CONSOLE = "console"
    """The ``safebus`` command line of the partnership's administrators (erasures, audit views)."""

    @property
    def agency_id(self) -> str:
        """The service's directory id."""
        return f"safebus-{self.value}"


def signed_bytes(topic: str, value: bytes) -> bytes:
    """What a fact signature covers: the format, the topic and the record value."""
    return f"{FACT_SIGNATURE_FORMAT}\n{topic}\n".encode() + value


@dataclass(frozen=True)
class FactSigner:
    """Signs records bound for the audit topic with one component's key; other records pass unchanged."""

    keys: PrivateKeys
    audit_topic: str

    @cached_property
    def key_id(self) -> str:
        """The key id the signatures name (computed once: it is in every header)."""
        return self.keys.public().signing_key_id

    @property
    def signer_id(self) -> str:
        """The directory id the signatures name."""
        return self.keys.agency_id

    def sign(self, output: Output) -> Output:
        """`output` with the fact-signature headers if it is for the audit topic (replacing any it had)."""
        if output.topic != self.audit_topic:
            return output
        signature = self.keys.signing.sign(signed_bytes(output.topic, output.value))
        headers = (
            *(h for h in output.headers if h[0] not in _HEADERS),
            (FACT_SIGNER, self.keys.agency_id.encode()),
            (FACT_KEY_ID, self.key_id.encode()),
            (FACT_SIGNATURE, b64e(signature).encode()),
        )
        return replace(output, headers=headers)

    def sign_all(self, outputs: Iterable[Output]) -> list[Output]:
        """Every output, those for the audit topic signed."""
        return [self.sign(o) for o in outputs]


class FactPublisher:
    """The one way onto the audit topic: signs each fact and waits until the broker has all of them."""

    def __init__(self, signer: FactSigner, producer: Producer | Publisher) -> None:
        self.signer = signer
        self.producer = producer

    def publish(self, outputs: Iterable[Output]) -> None:
        """Sign and produce `outputs`; raises BrokerError if the broker does not confirm every one."""
        produce_all(self.producer, self.signer.sign_all(outputs))

    def __call__(self, outputs: list[Output]) -> None:
        """`publish`, for callers that take a plain callable."""
        self.publish(outputs)


def fact_signer(store: PartnershipStore, signer: Service | str, *, audit_topic: str) -> FactSigner:
    """The signer for a service (or the router, by its agency id) whose key is in `store`; ConfigError if absent."""
    agency_id = signer.agency_id if isinstance(signer, Service) else signer
    try:
        return FactSigner(keys=store.private_keys(agency_id), audit_topic=audit_topic)
    except ConfigError as exc:
        raise ConfigError(
            f"no fact-signing key for {agency_id} in {store.state_dir}: audit facts must be signed; add it with "
            f"'safebus agency add --agency {agency_id} --kind service --name …' (or recreate a synthetic "
            "partnership with 'safebus partnership init --force')") from exc


def fact_publisher(store: PartnershipStore, signer: Service | str, *, audit_topic: str,
                   bootstrap: str) -> FactPublisher:
    """A `FactPublisher` for `signer` on a new reliable producer."""
    return FactPublisher(fact_signer(store, signer, audit_topic=audit_topic), reliable_producer(bootstrap))


class UnattributedFact(SafebusError, ValueError):
    """A record on the audit topic whose author cannot be told: the reason code is `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def verify_fact(record: Record, directory: Directory) -> str:
    """
    The directory id of the component that signed `record`; raises `UnattributedFact` otherwise.

    Reasons: ``unsigned-fact`` (no or incomplete signature headers),
    ``unknown-fact-signer`` (not a router or service in the directory, or a
    key it does not list or has retired), ``revoked-key`` and
    ``bad-fact-signature`` (the signature does not cover these bytes).
    """
    signer, key, signature = (record.header(h) for h in (FACT_SIGNER, FACT_KEY_ID, FACT_SIGNATURE))
    if not (signer and key and signature):
        raise UnattributedFact("unsigned-fact", "no safebus-fact-signature/1 headers")
    agency = directory.get(signer)
    if agency is None or agency.kind not in SIGNER_KINDS:
        raise UnattributedFact("unknown-fact-signer", f"{signer[:80]!r} is not a partnership component")
    try:
        public = directory.signing_key(signer, key)
    except InvalidEnvelope as exc:
        reason = "revoked-key" if exc.reason == "revoked-key" else "unknown-fact-signer"
        raise UnattributedFact(reason, f"key {key[:40]!r} of {signer} is not accepted") from exc
    try:
        public.verify(b64d(signature), signed_bytes(record.topic, record.value))
    except (InvalidSignature, ValueError) as exc:
        raise UnattributedFact("bad-fact-signature", f"the signature of {signer} does not verify") from exc
    return signer

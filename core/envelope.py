"""
The signed, encrypted envelope every event travels in (format ``safebus-envelope/1``).

Wire form: one UTF-8 JSON object (byte strings as unpadded base64url)::

    {"header": {...}, "wrapped_key": B64, "nonce": B64, "ciphertext": B64, "signature": B64}

``header`` holds only strings: ``format``, ``event_id``, ``event_type``,
``schema_id``, ``schema_version``, ``producer``, ``signing_key_id``,
``recipient``, ``recipient_key_id``, ``data_key_id``, ``created_at``, ``topic``.

Sealing:

1. a fresh 256-bit data key encrypts the payload with AES-256-GCM; the
   associated data is the *canonical header* (JSON, keys sorted, no spaces), so
   ciphertext moved to another event, topic, schema or key fails to decrypt;
2. the data key is wrapped for the recipient: X25519 between a fresh ephemeral
   key and the recipient's key, HKDF-SHA256 (salt = ephemeral ‖ recipient public
   key) to a key-encryption key, AES-256-GCM over the data key with the same
   associated data; ``wrapped_key`` = ephemeral public (32) ‖ nonce (12) ‖ wrapped (48);
3. the producer signs, with Ed25519, the canonical JSON of the whole envelope
   without its ``signature`` member.

The full specification, with test vectors, is issue 4's; this module is the
walking skeleton's implementation of it and keeps to the same shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from safebus.errors import InvalidEnvelope
from safebus.keys import PrivateKeys, PublicKeys, b64d, b64e
from safebus.schemas._base import Event

FORMAT = "safebus-envelope/1"
MAX_ENVELOPE_BYTES = 1_048_576
"""Anything larger is rejected before parsing: no event of ours comes near it (DoS guard)."""

_HEADER_FIELDS = frozenset({
    "format", "event_id", "event_type", "schema_id", "schema_version", "producer", "signing_key_id",
    "recipient", "recipient_key_id", "data_key_id", "created_at", "topic",
})
_WRAP_INFO = b"safebus-envelope/1 key-wrap"


_B64 = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "description": "unpadded base64url"}
ENVELOPE_JSON_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"urn:safebus:schema:envelope:{FORMAT.split('/')[1]}",
    "title": "safebus envelope",
    "description": "Signed (Ed25519) and encrypted (AES-256-GCM, key wrapped with X25519 + HKDF-SHA256) "
                   "wrapper of every event; the canonical header is the associated data.",
    "type": "object",
    "additionalProperties": False,
    "required": ["header", "wrapped_key", "nonce", "ciphertext", "signature"],
    "properties": {
        "header": {
            "type": "object",
            "additionalProperties": False,
            "required": sorted(_HEADER_FIELDS),
            "properties": {name: {"type": "string"} for name in sorted(_HEADER_FIELDS)} | {"format": {"const": FORMAT}},
        },
        "wrapped_key": _B64 | {"description": "ephemeral X25519 public key (32) || nonce (12) || wrapped key (48)"},
        "nonce": _B64,
        "ciphertext": _B64,
        "signature": _B64 | {"description": "Ed25519 over the canonical JSON of the envelope without signature"},
    },
}
"""The wire form as JSON Schema, for partners and the AsyncAPI document."""


def canonical_json(value: object) -> bytes:
    """Serialise `value` canonically: sorted keys, no whitespace, UTF-8 (RFC 8785 for our value types)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class Opened:
    """A verified, decrypted envelope."""

    header: Mapping[str, str]
    plaintext: bytes

    @property
    def event_id(self) -> str:
        """The event id the producer gave."""
        return self.header["event_id"]

    @property
    def event_type(self) -> str:
        """The event type the producer declared."""
        return self.header["event_type"]

    @property
    def producer(self) -> str:
        """The agency that signed the envelope."""
        return self.header["producer"]


def seal(
    plaintext: bytes,
    *,
    sender: PrivateKeys,
    recipient: PublicKeys,
    event_id: str,
    event_type: str,
    schema_id: str,
    schema_version: str,
    topic: str,
    now: datetime,
) -> bytes:
    """Encrypt `plaintext` for `recipient`, sign it as `sender`, and return the envelope bytes."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    data_key = AESGCM.generate_key(bit_length=256)
    header = {
        "format": FORMAT,
        "event_id": event_id,
        "event_type": event_type,
        "schema_id": schema_id,
        "schema_version": schema_version,
        "producer": sender.agency_id,
        "signing_key_id": sender.public().signing_key_id,
        "recipient": recipient.agency_id,
        "recipient_key_id": recipient.encryption_key_id,
        "data_key_id": hashlib.sha256(ephemeral_public).hexdigest()[:16],
        "created_at": now.isoformat(),
        "topic": topic,
    }
    aad = canonical_json(header)
    wrap_nonce, nonce = os.urandom(12), os.urandom(12)
    kek = _key_encryption_key(ephemeral.exchange(recipient.encryption), ephemeral_public, recipient.encryption)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, aad)
    body = {
        "header": header,
        "wrapped_key": b64e(ephemeral_public + wrap_nonce + wrapped),
        "nonce": b64e(nonce),
        "ciphertext": b64e(AESGCM(data_key).encrypt(nonce, plaintext, aad)),
    }
    signature = sender.signing.sign(canonical_json(body))
    return canonical_json({**body, "signature": b64e(signature)})


def seal_event(event: Event, *, sender: PrivateKeys, recipient: PublicKeys, topic: str, now: datetime) -> bytes:
    """Seal a contract event: the header's id, type, schema and version come from the event itself."""
    return seal(
        event.model_dump_json().encode(), sender=sender, recipient=recipient, event_id=event.event_id,
        event_type=event.event_type, schema_id=event.schema_id(), schema_version=event.schema_version,
        topic=topic, now=now,
    )


def peek_header(raw: bytes) -> Mapping[str, str] | None:
    """Return the unverified header for logging and dead-letter headers, or None if unparseable."""
    try:
        header = json.loads(raw)["header"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        return None
    return header


def open_envelope(
    raw: bytes,
    *,
    recipient: PrivateKeys,
    senders: Mapping[str, PublicKeys],
    topic: str | None = None,
) -> Opened:
    """
    Verify and decrypt an envelope addressed to `recipient`.

    Raises `InvalidEnvelope` with a reason code; nothing about the payload is
    revealed through the error.
    """
    # (1): bounded size, well-formed JSON of exactly the expected shape.
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope("too-large")
    try:
        envelope = json.loads(raw)
        header = envelope["header"]
        parts = {name: b64d(envelope[name]) for name in ("wrapped_key", "nonce", "ciphertext", "signature")}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidEnvelope("malformed") from exc
    if (
        not isinstance(envelope, dict)
        or set(envelope) != {"header", "wrapped_key", "nonce", "ciphertext", "signature"}
        or not isinstance(header, dict)
        or set(header) != _HEADER_FIELDS
        or not all(isinstance(v, str) for v in header.values())
        or header["format"] != FORMAT
        or len(parts["wrapped_key"]) != 32 + 12 + 48
        or len(parts["nonce"]) != 12
    ):
        raise InvalidEnvelope("malformed")

    # (2): the envelope names the topic it was published to.
    if topic is not None and header["topic"] != topic:
        raise InvalidEnvelope("wrong-topic")

    # (3): the sender is a known agency and signed with its current key.
    sender = senders.get(header["producer"])
    if sender is None or sender.signing_key_id != header["signing_key_id"]:
        raise InvalidEnvelope("unknown-sender")

    # (4): the signature covers header, wrapped key, nonce and ciphertext.
    body = {k: envelope[k] for k in ("header", "wrapped_key", "nonce", "ciphertext")}
    try:
        sender.signing.verify(parts["signature"], canonical_json(body))
    except InvalidSignature as exc:
        raise InvalidEnvelope("bad-signature") from exc

    # (5): it is addressed to us, under our current key.
    ours = recipient.public()
    if header["recipient"] != recipient.agency_id or header["recipient_key_id"] != ours.encryption_key_id:
        raise InvalidEnvelope("wrong-recipient")

    # (6): unwrap the data key and decrypt, both bound to the header.
    aad = canonical_json(header)
    wrapped_key = parts["wrapped_key"]
    ephemeral_public, wrap_nonce, wrapped = wrapped_key[:32], wrapped_key[32:44], wrapped_key[44:]
    try:
        shared = recipient.encryption.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        kek = _key_encryption_key(shared, ephemeral_public, ours.encryption)
        data_key = AESGCM(kek).decrypt(wrap_nonce, wrapped, aad)
        plaintext = AESGCM(data_key).decrypt(parts["nonce"], parts["ciphertext"], aad)
    except (InvalidTag, ValueError) as exc:
        raise InvalidEnvelope("undecryptable") from exc
    return Opened(header=header, plaintext=plaintext)


def _key_encryption_key(shared: bytes, ephemeral_public: bytes, recipient: X25519PublicKey) -> bytes:
    recipient_raw = recipient.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_raw, info=_WRAP_INFO).derive(
        shared
    )

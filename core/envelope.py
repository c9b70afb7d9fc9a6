"""
The signed, encrypted envelope every event travels in (format ``safebus-envelope/1``).

Wire form: one UTF-8 JSON object (byte strings as unpadded base64url)::

    {"header": {...}, "wrapped_key": B64, "nonce": B64, "ciphertext": B64, "signature": B64}

``header`` holds only strings: ``format``, ``event_id``, ``event_type``,
``schema_id``, ``schema_version``, ``producer``, ``signing_key_id``,
``recipient``, ``recipient_key_id``, ``data_key_id``, ``created_at``, ``topic``.

Sealing:

1. a fresh 256-bit data key is wrapped for the recipient: X25519 between a
   fresh ephemeral key and the recipient's key, HKDF-SHA256 (salt = ephemeral ‖
   recipient public key) to a key-encryption key, AES-256-GCM over the data key;
   ``wrapped_key`` = ephemeral public (32) ‖ nonce (12) ‖ wrapped (48);
2. the content key is HKDF-SHA256 over the data key followed by the secrets of
   the *subject keys* the header lists in ``data_key_id`` (the people the
   payload is about, see `safebus.keyservice`): reading needs the recipient's
   private key *and* every subject's key, so erasing a subject shreds the event;
3. the payload is encrypted with AES-256-GCM under the content key;
4. both encryptions take the *canonical header* (JSON, keys sorted, no spaces)
   as associated data, so ciphertext moved to another event, topic, schema,
   producer or key fails to decrypt;
5. the producer signs, with Ed25519, the canonical JSON of the whole envelope
   without its ``signature`` member.

docs/envelope.md specifies the format for other languages; tests/vectors holds
fixed-key test vectors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from safebus.b64 import b64d, b64e
from safebus.bounded_json import JsonRefused, loads_object
from safebus.errors import EnvelopeError, InvalidEnvelope
from safebus.jcs import canonical_json
from safebus.keys import PrivateKeys, PublicKeys
from safebus.keyservice import SubjectKey
from safebus.limits import MAX_RECORD_BYTES
from safebus.schemas._base import Event

__all__ = [
    "ENVELOPE_JSON_SCHEMA",
    "FORMAT",
    "MAX_ENVELOPE_BYTES",
    "MAX_SUBJECT_KEYS",
    "Opened",
    "SenderKeys",
    "open_envelope",
    "peek_header",
    "seal",
    "seal_event",
]

FORMAT = "safebus-envelope/1"
MAX_ENVELOPE_BYTES = MAX_RECORD_BYTES
"""Anything larger is rejected before parsing (DoS guard); the bus's record limit, `safebus.limits`."""
MAX_SUBJECT_KEYS = 64
"""An event about more people than this is refused (bounds key-service lookups per envelope)."""

_HEADER_FIELDS = frozenset({
    "format", "event_id", "event_type", "schema_id", "schema_version", "producer", "signing_key_id",
    "recipient", "recipient_key_id", "data_key_id", "created_at", "topic",
})
_WRAP_INFO = b"safebus-envelope/1 key-wrap"
_CONTENT_INFO = b"safebus-envelope/1 content"


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
    subject_keys: Sequence[SubjectKey] = (),
) -> bytes:
    """Encrypt `plaintext` for `recipient` under `subject_keys`, sign it as `sender`, and return the envelope."""
    return _seal(
        plaintext, sender=sender, recipient=recipient, event_id=event_id, event_type=event_type,
        schema_id=schema_id, schema_version=schema_version, topic=topic, now=now, subject_keys=subject_keys,
        ephemeral=X25519PrivateKey.generate(), data_key=AESGCM.generate_key(bit_length=256),
        wrap_nonce=os.urandom(12), nonce=os.urandom(12),
    )


def _seal(
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
    subject_keys: Sequence[SubjectKey],
    ephemeral: X25519PrivateKey,
    data_key: bytes,
    wrap_nonce: bytes,
    nonce: bytes,
) -> bytes:
    """`seal` with its random inputs given: the test vectors fix them, nothing else may."""
    subjects = sorted({key.key_id: key for key in subject_keys}.values(), key=lambda key: key.key_id)
    if len(subjects) > MAX_SUBJECT_KEYS:
        raise EnvelopeError(f"an envelope may name at most {MAX_SUBJECT_KEYS} subject keys")
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
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
        "data_key_id": ",".join(key.key_id for key in subjects),
        "created_at": now.isoformat(),
        "topic": topic,
    }
    aad = canonical_json(header)
    kek = _key_encryption_key(ephemeral.exchange(recipient.encryption), ephemeral_public, recipient.encryption)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, aad)
    content_key = _content_key(data_key, [key.secret for key in subjects])
    body = {
        "header": header,
        "wrapped_key": b64e(ephemeral_public + wrap_nonce + wrapped),
        "nonce": b64e(nonce),
        "ciphertext": b64e(AESGCM(content_key).encrypt(nonce, plaintext, aad)),
    }
    signature = sender.signing.sign(canonical_json(body))
    return canonical_json({**body, "signature": b64e(signature)})


def seal_event(
    event: Event, *, sender: PrivateKeys, recipient: PublicKeys, topic: str, now: datetime,
    subject_keys: Sequence[SubjectKey] = (),
) -> bytes:
    """Seal a contract event: the header's id, type, schema and version come from the event itself."""
    return seal(
        event.model_dump_json().encode(), sender=sender, recipient=recipient, event_id=event.event_id,
        event_type=event.event_type, schema_id=event.schema_id(), schema_version=event.schema_version,
        topic=topic, now=now, subject_keys=subject_keys,
    )


def peek_header(raw: bytes) -> Mapping[str, str] | None:
    """Return the unverified header for logging and dead-letter headers, or None if unparseable."""
    try:
        header = loads_object(raw)["header"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        return None
    return header


def _no_subject_keys(key_id: str) -> bytes | None:
    return None


class SenderKeys(Protocol):
    """Where an envelope's signing key is looked up: the agency directory implements it."""

    def signing_key(self, agency_id: str, signing_key_id: str) -> Ed25519PublicKey:
        """The key to verify with; raises InvalidEnvelope (``unknown-sender``, ``revoked-key``) otherwise."""
        ...


class _FixedSenders:
    """Senders given as plain current public keys (tests, single-generation callers)."""

    def __init__(self, keys: Mapping[str, PublicKeys]) -> None:
        self._keys = keys

    def signing_key(self, agency_id: str, signing_key_id: str) -> Ed25519PublicKey:
        sender = self._keys.get(agency_id)
        if sender is None or sender.signing_key_id != signing_key_id:
            raise InvalidEnvelope("unknown-sender")
        return sender.signing


def open_envelope(
    raw: bytes,
    *,
    recipient: PrivateKeys | Sequence[PrivateKeys],
    senders: SenderKeys | Mapping[str, PublicKeys],
    topic: str | None = None,
    subject_keys: Callable[[str], bytes | None] = _no_subject_keys,
) -> Opened:
    """
    Verify and decrypt an envelope addressed to `recipient`.

    `recipient` is the reader's keys, or its whole keyring (every generation it
    still holds) so envelopes sealed before a rotation stay readable.
    `senders` is the agency directory (which knows rotated, retired and revoked
    keys) or a mapping of current public keys.  `subject_keys` looks up a
    subject key's secret by key id (a key service's ``lookup``).  Raises
    `InvalidEnvelope` with a reason code; nothing about the payload is revealed
    through the error.
    """
    verifiers: SenderKeys = _FixedSenders(senders) if isinstance(senders, Mapping) else senders
    keyring = [recipient] if isinstance(recipient, PrivateKeys) else list(recipient)
    # (1): bounded size, well-formed JSON of exactly the expected shape.
    try:
        envelope = loads_object(raw, max_bytes=MAX_ENVELOPE_BYTES)
    except JsonRefused as exc:
        raise InvalidEnvelope("too-large" if exc.reason == "too-large" else "malformed") from exc
    try:
        header = envelope["header"]
        parts = {name: b64d(cast(str, envelope[name])) for name in ("wrapped_key", "nonce", "ciphertext", "signature")}
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

    # (3): the sender is a known agency and signed with a key still accepted.
    signing_key = verifiers.signing_key(header["producer"], header["signing_key_id"])

    # (4): the signature covers header, wrapped key, nonce and ciphertext.
    body = {k: envelope[k] for k in ("header", "wrapped_key", "nonce", "ciphertext")}
    try:
        signing_key.verify(parts["signature"], canonical_json(body))
    except InvalidSignature as exc:
        raise InvalidEnvelope("bad-signature") from exc

    # (5): it is addressed to us, under a key we still hold.
    mine = next((k for k in keyring if k.agency_id == header["recipient"]
                 and k.public().encryption_key_id == header["recipient_key_id"]), None)
    if mine is None:
        raise InvalidEnvelope("wrong-recipient")
    ours = mine.public()

    # (6): every subject key it names is still held (erased subjects end here).
    key_ids = header["data_key_id"].split(",") if header["data_key_id"] else []
    if len(key_ids) > MAX_SUBJECT_KEYS:
        raise InvalidEnvelope("malformed")
    secrets = [subject_keys(key_id) for key_id in key_ids]
    if any(secret is None for secret in secrets):
        raise InvalidEnvelope("subject-key-unavailable")

    # (7): unwrap the data key, derive the content key, decrypt; all bound to the header.
    aad = canonical_json(header)
    wrapped_key = parts["wrapped_key"]
    ephemeral_public, wrap_nonce, wrapped = wrapped_key[:32], wrapped_key[32:44], wrapped_key[44:]
    try:
        shared = mine.encryption.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        kek = _key_encryption_key(shared, ephemeral_public, ours.encryption)
        data_key = AESGCM(kek).decrypt(wrap_nonce, wrapped, aad)
        content_key = _content_key(data_key, [secret for secret in secrets if secret is not None])
        plaintext = AESGCM(content_key).decrypt(parts["nonce"], parts["ciphertext"], aad)
    except (InvalidTag, ValueError) as exc:
        raise InvalidEnvelope("undecryptable") from exc
    return Opened(header=header, plaintext=plaintext)


def _content_key(data_key: bytes, subject_secrets: Sequence[bytes]) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CONTENT_INFO).derive(
        data_key + b"".join(subject_secrets)
    )


def _key_encryption_key(shared: bytes, ephemeral_public: bytes, recipient: X25519PublicKey) -> bytes:
    recipient_raw = recipient.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_raw, info=_WRAP_INFO).derive(
        shared
    )

"""The envelope format's committed test vectors: what another implementation must reproduce byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from safebus.b64 import b64d, b64e
from safebus.envelope import open_envelope
from safebus.errors import InvalidEnvelope
from safebus.jcs import canonical_json
from safebus.keys import PrivateKeys, PublicKeys
from tests.vectors import make_envelope_vectors

VECTORS: dict[str, Any] = json.loads((Path(__file__).parents[2] / "vectors" / "envelope-v1.json").read_text())


def _canonical(value: object) -> bytes:
    """docs/envelope.md §2's shortcut for partners without RFC 8785: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _spec_seal(inputs: dict[str, Any]) -> bytes:
    """docs/envelope.md §4, step by step, from raw primitives only."""
    sign = Ed25519PrivateKey.from_private_bytes(b64d(inputs["sender"]["signing_private"]))
    recipient = X25519PrivateKey.from_private_bytes(b64d(inputs["recipient"]["encryption_private"])).public_key()
    ephemeral = X25519PrivateKey.from_private_bytes(b64d(inputs["ephemeral_private"]))

    def raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    subjects = sorted(inputs["subject_keys"], key=lambda k: k["key_id"])
    header = {
        "format": "safebus-envelope/1", "event_id": inputs["event_id"], "event_type": inputs["event_type"],
        "schema_id": inputs["schema_id"], "schema_version": inputs["schema_version"],
        "producer": inputs["sender"]["agency_id"],
        "signing_key_id": hashlib.sha256(raw(sign.public_key())).hexdigest()[:16],
        "recipient": inputs["recipient"]["agency_id"],
        "recipient_key_id": hashlib.sha256(raw(recipient)).hexdigest()[:16],
        "data_key_id": ",".join(k["key_id"] for k in subjects), "created_at": inputs["created_at"],
        "topic": inputs["topic"],
    }
    aad = _canonical(header)
    data_key, wrap_nonce, nonce = b64d(inputs["data_key"]), b64d(inputs["wrap_nonce"]), b64d(inputs["nonce"])
    kek = _hkdf(ephemeral.exchange(recipient), raw(ephemeral.public_key()) + raw(recipient),
                b"safebus-envelope/1 key-wrap")
    content_key = _hkdf(data_key + b"".join(b64d(k["secret"]) for k in subjects), None,
                        b"safebus-envelope/1 content")
    body = {
        "header": header,
        "wrapped_key": b64e(raw(ephemeral.public_key()) + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, aad)),
        "nonce": b64e(nonce),
        "ciphertext": b64e(AESGCM(content_key).encrypt(nonce, b64d(inputs["plaintext"]), aad)),
    }
    return _canonical({**body, "signature": b64e(sign.sign(_canonical(body)))})


def _recipient(case: dict[str, Any]) -> PrivateKeys:
    return make_envelope_vectors._keys(case["inputs"]["recipient"]["agency_id"])


def _senders() -> dict[str, PublicKeys]:
    return {agency: PublicKeys.from_b64(agency_id=agency, signing=keys["signing"], encryption=keys["encryption"])
            for agency, keys in VECTORS["public_keys"].items()}


def test_committed_vectors_match_the_code() -> None:
    """Regenerating the vectors changes nothing: the wire format has not drifted."""
    assert make_envelope_vectors.build() == VECTORS


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_specification_reproduces_each_envelope_byte_for_byte(case: dict[str, Any]) -> None:
    """Following docs/envelope.md with raw primitives gives exactly the committed bytes."""
    envelope = _spec_seal(case["inputs"])
    assert envelope.decode() == case["expected"]["envelope"]
    assert hashlib.sha256(envelope).hexdigest() == case["expected"]["envelope_sha256"]
    assert _canonical(json.loads(envelope)["header"]).decode() == case["expected"]["canonical_header"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_each_vector_opens_to_its_plaintext(case: dict[str, Any]) -> None:
    """The recipient recovers the plaintext with its key and the listed subject keys."""
    secrets = {k["key_id"]: b64d(k["secret"]) for k in case["inputs"]["subject_keys"]}
    opened = open_envelope(case["expected"]["envelope"].encode(), recipient=_recipient(case), senders=_senders(),
                           topic=case["inputs"]["topic"], subject_keys=secrets.get)
    assert opened.plaintext == b64d(case["inputs"]["plaintext"])


@pytest.mark.parametrize("variant", VECTORS["tampered"], ids=lambda v: v["reason"] + ": " + v["change"])
def test_each_tampered_vector_fails_with_its_reason(variant: dict[str, str]) -> None:
    """Every listed change is refused with the documented reason code."""
    case = VECTORS["cases"][1]
    secrets = {k["key_id"]: b64d(k["secret"]) for k in case["inputs"]["subject_keys"]}
    lookup = (lambda key_id: None) if variant.get("drop_subject_keys") else secrets.get
    with pytest.raises(InvalidEnvelope, match=variant["reason"]):
        open_envelope(variant["envelope"].encode(), recipient=_recipient(case), senders=_senders(),
                      topic=variant.get("open_topic", case["inputs"]["topic"]), subject_keys=lookup)


_HEADER_NAMES = sorted(json.loads(VECTORS["cases"][0]["expected"]["envelope"])["header"])
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
"""Any valid Unicode text: controls, quotes, backslashes, U+2028, astral characters (no lone surrogates)."""
_HEADERS = st.fixed_dictionaries({name: _TEXT for name in _HEADER_NAMES})


@given(header=_HEADERS, members=st.lists(_TEXT, min_size=4, max_size=4))
def test_the_partners_shortcut_is_rfc_8785_for_every_envelope(header: dict[str, str], members: list[str]) -> None:
    """For an envelope's values (fixed ASCII names, string members) sorted-keys JSON and RFC 8785 agree byte for byte.

    So a partner that follows §2 with its standard encoder, the committed vectors, and safebus
    (which canonicalises with `safebus.jcs`) all sign and bind the same bytes.
    """
    body = {"header": header, **dict(zip(("wrapped_key", "nonce", "ciphertext", "signature"), members, strict=True))}
    assert canonical_json(header) == _canonical(header)
    assert canonical_json(body) == _canonical(body)

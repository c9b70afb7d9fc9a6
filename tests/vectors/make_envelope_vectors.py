"""
Generates tests/vectors/envelope-v1.json: fixed inputs of the envelope and the exact bytes they give.

Run ``python -m tests.vectors.make_envelope_vectors`` after a *deliberate* format
change (and bump the format version); the test suite checks the committed file
against the code, so an accidental change to the wire format fails CI.  Keys are
derived from fixed labels with SHA-256, so the file is reproducible anywhere.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from safebus.b64 import b64e
from safebus.envelope import _seal
from safebus.jcs import canonical_json
from safebus.keys import PrivateKeys
from safebus.keyservice import SubjectKey

OUT = Path(__file__).with_name("envelope-v1.json")


def _secret(label: str) -> bytes:
    return hashlib.sha256(f"safebus test vector: {label}".encode()).digest()


def _keys(agency_id: str) -> PrivateKeys:
    return PrivateKeys(agency_id=agency_id,
                       signing=Ed25519PrivateKey.from_private_bytes(_secret(f"{agency_id} signing")),
                       encryption=X25519PrivateKey.from_private_bytes(_secret(f"{agency_id} encryption")))


def _raw(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return b64e(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def _case(name: str, plaintext: bytes, subjects: list[SubjectKey], **header: str) -> dict[str, Any]:
    sender, recipient = _keys("vector-police"), _keys("vector-router")
    ephemeral = X25519PrivateKey.from_private_bytes(_secret(f"{name} ephemeral"))
    inputs = {
        "sender": {"agency_id": sender.agency_id, "signing_private": _raw(sender.signing)},
        "recipient": {"agency_id": recipient.agency_id, "encryption_private": _raw(recipient.encryption)},
        "ephemeral_private": _raw(ephemeral),
        "data_key": b64e(_secret(f"{name} data key")),
        "wrap_nonce": b64e(_secret(f"{name} wrap nonce")[:12]),
        "nonce": b64e(_secret(f"{name} nonce")[:12]),
        "subject_keys": [{"key_id": k.key_id, "secret": b64e(k.secret)} for k in subjects],
        "plaintext": b64e(plaintext),
        **header,
    }
    envelope = _seal(
        plaintext, sender=sender, recipient=recipient.public(), event_id=header["event_id"],
        event_type=header["event_type"], schema_id=header["schema_id"], schema_version=header["schema_version"],
        topic=header["topic"], now=datetime.fromisoformat(header["created_at"]), subject_keys=subjects,
        ephemeral=ephemeral, data_key=_secret(f"{name} data key"), wrap_nonce=_secret(f"{name} wrap nonce")[:12],
        nonce=_secret(f"{name} nonce")[:12],
    )
    parsed = json.loads(envelope)
    return {
        "name": name,
        "inputs": inputs,
        "expected": {
            "canonical_header": canonical_json(parsed["header"]).decode(),
            "envelope": envelope.decode(),
            "envelope_sha256": hashlib.sha256(envelope).hexdigest(),
        },
    }


def _tampered(envelope: str) -> list[dict[str, str]]:
    """Variants of one envelope and the reason code opening each must fail with."""
    parsed = json.loads(envelope)

    def with_(**changes: Any) -> str:
        return canonical_json({**parsed, **changes}).decode()

    flipped = "A" if parsed["ciphertext"][5] != "A" else "B"
    return [
        {"change": "one ciphertext character changed", "reason": "bad-signature",
         "envelope": with_(ciphertext=parsed["ciphertext"][:5] + flipped + parsed["ciphertext"][6:])},
        {"change": "header event_id changed", "reason": "bad-signature",
         "envelope": with_(header={**parsed["header"], "event_id": "00000000-0000-4000-8000-000000000000"})},
        {"change": "opened as if read from another topic", "reason": "wrong-topic", "envelope": envelope,
         "open_topic": "safebus.ingress.vector-police.other"},
        {"change": "signature removed", "reason": "malformed",
         "envelope": canonical_json({k: v for k, v in parsed.items() if k != "signature"}).decode()},
        {"change": "a subject key no longer held", "reason": "subject-key-unavailable", "envelope": envelope,
         "drop_subject_keys": "all"},
    ]


def build() -> dict[str, Any]:
    """All vectors, as written to envelope-v1.json."""
    common = {
        "event_type": "police.domestic-abuse-incident",
        "schema_id": "urn:safebus:schema:police.domestic-abuse-incident",
        "schema_version": "1.0.0",
        "created_at": datetime(2026, 11, 18, 21, 40, tzinfo=UTC).isoformat(),
        "topic": "safebus.ingress.vector-police.da-incident",
    }
    subjects = [SubjectKey(key_id=f"subj_{'a' * 32}@2026-11", secret=_secret("subject a")),
                SubjectKey(key_id=f"subj_{'b' * 32}@2026-11", secret=_secret("subject b"))]
    cases = [
        _case("no-subjects", b'{"example":"agency-level event"}', [],
              event_id="00000000-0000-4000-8000-000000000001", **common),
        _case("two-subjects", '{"child":"Ivy Calloway","note":"caf\u00e9 \u2013 synthetic"}'.encode(), subjects,
              event_id="00000000-0000-4000-8000-000000000002", **common),
    ]
    return {
        "format": "safebus-envelope/1",
        "description": "Fixed inputs and the exact envelope bytes they produce; see docs/envelope.md.",
        "public_keys": {agency: {"signing": _keys(agency).public().signing_b64(),
                                 "encryption": _keys(agency).public().encryption_b64()}
                        for agency in ("vector-police", "vector-router")},
        "cases": cases,
        "tampered": _tampered(cases[1]["expected"]["envelope"]),
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")

"""
Agency key pairs: Ed25519 to sign what an agency sends, X25519 to receive.

Every agency on the bus (a police force, a school, the router itself) holds two
private keys.  Their public halves are published in the agency directory; a key
is named by its *key id*, the first 16 hex digits of SHA-256 over the raw public
key, so an envelope can say which key it used without carrying the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from safebus.b64 import b64d, b64e
from safebus.errors import ConfigError
from safebus.private_files import write_private

__all__ = ["PrivateKeys", "PublicKeys", "key_id"]


def key_id(raw_public: bytes) -> str:
    """Return the key id of a raw 32-byte public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, kw_only=True)
class PublicKeys:
    """The public keys an agency publishes in the directory."""

    agency_id: str
    signing: Ed25519PublicKey
    encryption: X25519PublicKey

    @property
    def signing_key_id(self) -> str:
        """Key id of the signing key."""
        return key_id(_raw_public(self.signing))

    @property
    def encryption_key_id(self) -> str:
        """Key id of the encryption key."""
        return key_id(_raw_public(self.encryption))

    @classmethod
    def from_b64(cls, *, agency_id: str, signing: str, encryption: str) -> PublicKeys:
        """Build from the base64 text the directory stores; raises ConfigError on bad keys."""
        try:
            return cls(
                agency_id=agency_id,
                signing=Ed25519PublicKey.from_public_bytes(b64d(signing)),
                encryption=X25519PublicKey.from_public_bytes(b64d(encryption)),
            )
        except ValueError as exc:
            raise ConfigError(f"agency {agency_id!r} has a malformed public key") from exc

    def signing_b64(self) -> str:
        """Base64 of the raw signing public key."""
        return b64e(_raw_public(self.signing))

    def encryption_b64(self) -> str:
        """Base64 of the raw encryption public key."""
        return b64e(_raw_public(self.encryption))


@dataclass(frozen=True, kw_only=True)
class PrivateKeys:
    """An agency's private signing and decryption keys (kept by that agency only)."""

    agency_id: str
    signing: Ed25519PrivateKey
    encryption: X25519PrivateKey

    @classmethod
    def generate(cls, agency_id: str) -> PrivateKeys:
        """Generate fresh keys for `agency_id`."""
        return cls(agency_id=agency_id, signing=Ed25519PrivateKey.generate(), encryption=X25519PrivateKey.generate())

    def public(self) -> PublicKeys:
        """Return the public halves."""
        return PublicKeys(
            agency_id=self.agency_id, signing=self.signing.public_key(), encryption=self.encryption.public_key()
        )

    def save(self, path: Path) -> None:
        """Write the keys to `path`, readable by the owner only (mode 0600)."""
        raw = {
            "agency_id": self.agency_id,
            "signing_private": b64e(self.signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
            "encryption_private": b64e(self.encryption.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
        }
        write_private(path, json.dumps(raw).encode())

    @classmethod
    def load(cls, path: Path) -> PrivateKeys:
        """Read keys written by `save`; raises ConfigError if missing or malformed."""
        try:
            raw = json.loads(path.read_text())
            return cls(
                agency_id=raw["agency_id"],
                signing=Ed25519PrivateKey.from_private_bytes(b64d(raw["signing_private"])),
                encryption=X25519PrivateKey.from_private_bytes(b64d(raw["encryption_private"])),
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"no key file at {path}") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"malformed key file {path}") from exc

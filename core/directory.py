"""
The partnership's agency directory: who is on the bus, with which keys, vouched for by the partnership.

Every entry (an agency, its key generations and contacts) is signed by the
partnership's root key and expires; loading the directory verifies each entry
against the trust anchor (the root public key, provisioned out of band) and
refuses unsigned, forged or stale entries, so a process never trusts a key
the partnership did not vouch for.

Keys rotate by *generation* (a signing and an encryption key together):

    active      used for new events; accepted
    superseded  replaced by a newer generation; still accepted, so old events stay readable
    retired     no longer accepted; its private keys are destroyed
    revoked     compromised; events signed with it are refused as ``revoked-key``

The development store keeps the directory as JSON in the state directory and
each local agency's private keys as 0600 files (the current generation in
``keys/<agency>.json``, earlier ones in ``keys/<agency>.<key id>.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.b64 import b64d, b64e
from safebus.clock import utc_now
from safebus.errors import ConfigError, InvalidEnvelope
from safebus.jcs import canonical_model
from safebus.keys import PrivateKeys, PublicKeys, key_id
from safebus.logs import get_logger
from safebus.private_files import write_private
from safebus.schemas.agency_kinds import AgencyKind as AgencyKind  # re-exported: the directory records kinds

__all__ = [
    "ENTRY_LIFETIME",
    "Agency",
    "AgencyKind",
    "Contact",
    "Directory",
    "KeyGeneration",
    "KeyStatus",
    "OnlyFrom",
    "PartnershipStore",
    "SignedAgency",
    "keyring_by_encryption_key",
    "new_entry",
    "rotated",
    "sign_entry",
    "verify_entry",
    "with_status",
]

_log = get_logger("directory")

ENTRY_LIFETIME = timedelta(days=90)
"""How long a signed entry stays valid: the partnership re-signs the directory at least this often."""


class KeyStatus(StrEnum):
    """Where a key generation is in its life."""

    ACTIVE = "active"
    SUPERSEDED = "superseded"
    RETIRED = "retired"
    REVOKED = "revoked"


_ACCEPTED = frozenset({KeyStatus.ACTIVE, KeyStatus.SUPERSEDED})


class KeyGeneration(BaseModel):
    """One generation of an agency's public keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signing_public: str
    encryption_public: str
    status: KeyStatus = KeyStatus.ACTIVE
    created_at: datetime
    status_changed_at: datetime | None = None

    @property
    def signing_key_id(self) -> str:
        """Key id of the signing key."""
        return key_id(b64d(self.signing_public))

    @property
    def encryption_key_id(self) -> str:
        """Key id of the encryption key."""
        return key_id(b64d(self.encryption_public))

    def public_keys(self, agency_id: str) -> PublicKeys:
        """The generation's keys as `PublicKeys`."""
        return PublicKeys.from_b64(agency_id=agency_id, signing=self.signing_public, encryption=self.encryption_public)


class Contact(BaseModel):
    """A named contact at an agency (for a school: its Key Adults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Agency(BaseModel):
    """One directory entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    kind: AgencyKind
    name: str
    urn: str | None = Field(default=None, pattern=r"^\d{6}$", description="DfE URN, schools only")
    keys: tuple[KeyGeneration, ...] = Field(min_length=1)
    contacts: tuple[Contact, ...] = ()
    issued_at: datetime
    expires_at: datetime

    def current(self) -> KeyGeneration:
        """The newest active generation; raises ConfigError if the agency has none (all revoked or retired)."""
        active = [g for g in self.keys if g.status is KeyStatus.ACTIVE]
        if not active:
            raise ConfigError(f"agency {self.id} has no active keys: rotate its keys")
        return active[-1]

    @property
    def is_active(self) -> bool:
        """Whether the agency can still send and receive: it has an active generation (a retired agency has none)."""
        return any(g.status is KeyStatus.ACTIVE for g in self.keys)

    def public_keys(self) -> PublicKeys:
        """The keys to seal for this agency with, and that it signs new events with."""
        return self.current().public_keys(self.id)

    def generation(self, key_id: str) -> KeyGeneration | None:
        """The generation whose signing or encryption key has `key_id`."""
        return next((g for g in self.keys if key_id in (g.signing_key_id, g.encryption_key_id)), None)


class SignedAgency(BaseModel):
    """A directory entry with the partnership root key's Ed25519 signature over its canonical JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry: Agency
    signature: str


def _entry_bytes(entry: Agency) -> bytes:
    return canonical_model(entry)


def sign_entry(entry: Agency, root: Ed25519PrivateKey) -> SignedAgency:
    """Sign `entry` with the partnership root key."""
    return SignedAgency(entry=entry, signature=b64e(root.sign(_entry_bytes(entry))))


def verify_entry(signed: SignedAgency, root: Ed25519PublicKey, *, now: datetime) -> Agency:
    """Return the entry if the root key signed it and it has not expired; else raise ConfigError."""
    try:
        root.verify(b64d(signed.signature), _entry_bytes(signed.entry))
    except (InvalidSignature, ValueError) as exc:
        raise ConfigError(f"directory entry {signed.entry.id} is not signed by the partnership root key") from exc
    if signed.entry.expires_at <= now:
        raise ConfigError(f"directory entry {signed.entry.id} expired at {signed.entry.expires_at.isoformat()}")
    return signed.entry


class Directory(BaseModel):
    """The verified agencies of one partnership."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partnership: str
    agencies: tuple[Agency, ...]

    def get(self, agency_id: str) -> Agency | None:
        """Return the agency with `agency_id`, or None."""
        return next((a for a in self.agencies if a.id == agency_id), None)

    def of_kind(self, kind: AgencyKind) -> list[Agency]:
        """Return every agency of `kind`, in directory order."""
        return [a for a in self.agencies if a.kind == kind]

    def school_by_urn(self, urn: str) -> Agency | None:
        """Return the onboarded school with `urn`, or None."""
        return next((a for a in self.agencies if a.kind == AgencyKind.SCHOOL and a.urn == urn), None)

    def router(self) -> Agency:
        """Return the router (processor) agency; a directory without one is unusable."""
        routers = self.of_kind(AgencyKind.ROUTER)
        if len(routers) != 1:
            raise ConfigError(f"the directory must name exactly one router agency, found {len(routers)}")
        return routers[0]

    def onboarded(self) -> Directory:
        """
        The directory without retired agencies (those with no active key generation).

        What the router routes by: nothing is shared with an agency that has
        left, and a child whose setting has left is treated as having no known
        setting.  The full directory still verifies and opens what they sent or
        received before (superseded keys are accepted for reading).
        """
        if all(a.is_active for a in self.agencies):
            return self
        return Directory(partnership=self.partnership, agencies=tuple(a for a in self.agencies if a.is_active))

    def public_keys(self) -> dict[str, PublicKeys]:
        """Every agency's current public keys by agency id."""
        return {a.id: a.public_keys() for a in self.agencies if any(g.status is KeyStatus.ACTIVE for g in a.keys)}

    def signing_key(self, agency_id: str, signing_key_id: str) -> Ed25519PublicKey:
        """
        The key to verify `agency_id`'s signature made with `signing_key_id`.

        Raises `InvalidEnvelope`: ``unknown-sender`` (no such agency or key, or
        a retired key) or ``revoked-key``.
        """
        agency = self.get(agency_id)
        generation = agency.generation(signing_key_id) if agency else None
        if generation is None or generation.signing_key_id != signing_key_id:
            raise InvalidEnvelope("unknown-sender")
        if generation.status is KeyStatus.REVOKED:
            raise InvalidEnvelope("revoked-key")
        if generation.status not in _ACCEPTED:
            raise InvalidEnvelope("unknown-sender")
        return generation.public_keys(agency_id).signing


class OnlyFrom:
    """A view of the directory that accepts signatures from some agencies only (a school accepts only the router)."""

    def __init__(self, directory: Directory, *agency_ids: str) -> None:
        self.directory = directory
        self.agency_ids = frozenset(agency_ids)

    def signing_key(self, agency_id: str, signing_key_id: str) -> Ed25519PublicKey:
        """As `Directory.signing_key`, but ``unknown-sender`` for anyone not allowed here."""
        if agency_id not in self.agency_ids:
            raise InvalidEnvelope("unknown-sender")
        return self.directory.signing_key(agency_id, signing_key_id)


def new_entry(keys: PrivateKeys, *, kind: AgencyKind, name: str, urn: str | None = None, now: datetime,
              contacts: tuple[Contact, ...] = ()) -> Agency:
    """A directory entry publishing `keys`' public halves as the agency's first generation."""
    public = keys.public()
    generation = KeyGeneration(signing_public=public.signing_b64(), encryption_public=public.encryption_b64(),
                               created_at=now)
    return Agency(id=keys.agency_id, kind=kind, name=name, urn=urn, keys=(generation,), contacts=contacts,
                  issued_at=now, expires_at=now + ENTRY_LIFETIME)


def rotated(entry: Agency, keys: PrivateKeys, *, now: datetime) -> Agency:
    """`entry` with a new active generation for `keys`; earlier active generations become superseded."""
    public = keys.public()
    earlier = tuple(g.model_copy(update={"status": KeyStatus.SUPERSEDED, "status_changed_at": now})
                    if g.status is KeyStatus.ACTIVE else g for g in entry.keys)
    newest = KeyGeneration(signing_public=public.signing_b64(), encryption_public=public.encryption_b64(),
                           created_at=now)
    return entry.model_copy(update={"keys": (*earlier, newest), "issued_at": now, "expires_at": now + ENTRY_LIFETIME})


def with_status(entry: Agency, signing_key_id: str, status: KeyStatus, *, now: datetime) -> Agency:
    """`entry` with the generation of `signing_key_id` set to `status`; raises ConfigError if there is none."""
    if not any(g.signing_key_id == signing_key_id for g in entry.keys):
        raise ConfigError(f"agency {entry.id} has no key {signing_key_id}")
    keys = tuple(g.model_copy(update={"status": status, "status_changed_at": now})
                 if g.signing_key_id == signing_key_id else g for g in entry.keys)
    return entry.model_copy(update={"keys": keys, "issued_at": now, "expires_at": now + ENTRY_LIFETIME})


class PartnershipStore:
    """
    The signed directory, the trust anchor and local private keys in a state directory.

    Layout: ``directory.json`` (signed entries), ``trust-anchor.json`` (the root
    public key), ``keys/partnership-root.json`` (the root private key: only the
    partnership administrator's machine holds it) and ``keys/<agency>[.<key id>].json``.
    In production each agency keeps only its own key files; the development store
    keeps all of them so one machine can play every part.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def directory_path(self) -> Path:
        """Path of the signed directory file."""
        return self.state_dir / "directory.json"

    def exists(self) -> bool:
        """Return True when a directory has been written."""
        return self.directory_path.exists()

    def _raw(self) -> tuple[str, list[SignedAgency]]:
        try:
            raw = json.loads(self.directory_path.read_text())
            return raw["partnership"], [SignedAgency.model_validate(e) for e in raw["entries"]]
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no agency directory at {self.directory_path}; run 'safebus demo' or 'safebus partnership init'"
            ) from exc
        except (KeyError, ValueError, ValidationError) as exc:
            raise ConfigError(
                f"invalid agency directory {self.directory_path} (one written by an older safebus is not signed): "
                "recreate it with 'safebus partnership init --force' or use a fresh SAFEBUS_HOME"
            ) from exc

    def trust_anchor(self) -> Ed25519PublicKey:
        """The partnership root public key this machine trusts."""
        try:
            return Ed25519PublicKey.from_public_bytes(b64d(json.loads(
                (self.state_dir / "trust-anchor.json").read_text())["root_public"]))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise ConfigError(f"no valid trust anchor in {self.state_dir}") from exc

    def load_directory(self, *, now: datetime | None = None) -> Directory:
        """Read the directory, keeping only entries the root key signed that have not expired."""
        partnership, signed = self._raw()
        root, moment = self.trust_anchor(), now or utc_now()
        agencies = []
        for entry in signed:
            try:
                agencies.append(verify_entry(entry, root, now=moment))
            except ConfigError as exc:
                _log.warning("directory_entry_refused", agency=entry.entry.id, reason=str(exc))
        return Directory(partnership=partnership, agencies=tuple(agencies))

    def signed_entries(self) -> list[SignedAgency]:
        """Every stored entry, verified or not (for publishing and administration)."""
        return self._raw()[1]

    def save_entries(self, partnership: str, entries: list[SignedAgency]) -> None:
        """Write the directory atomically (readers see the old or the new file, never half of one)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.directory_path.with_name(f".{self.directory_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(
            {"partnership": partnership, "entries": [e.model_dump(mode="json") for e in entries]}, indent=2) + "\n")
        os.replace(temporary, self.directory_path)

    def put_entry(self, signed: SignedAgency) -> None:
        """Add or replace one agency's signed entry."""
        partnership, entries = self._raw()
        self.save_entries(partnership, [e for e in entries if e.entry.id != signed.entry.id] + [signed])

    @property
    def _root_path(self) -> Path:
        return self.state_dir / "keys" / "partnership-root.json"

    def create_root(self) -> Ed25519PrivateKey:
        """Create the partnership root key (a 0600 file) and this machine's trust anchor."""
        root = Ed25519PrivateKey.generate()
        raw = root.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        write_private(self._root_path, json.dumps({"root_private": b64e(raw)}).encode("ascii"))
        self.write_trust_anchor(root.public_key())
        return root

    def write_trust_anchor(self, root_public: Ed25519PublicKey) -> None:
        """Trust `root_public` as the partnership root key on this machine."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "trust-anchor.json").write_text(json.dumps(
            {"root_public": b64e(root_public.public_bytes(Encoding.Raw, PublicFormat.Raw))}) + "\n")

    def root_key(self) -> Ed25519PrivateKey:
        """The partnership root private key (administrators only)."""
        try:
            raw = json.loads(self._root_path.read_text())["root_private"]
            return Ed25519PrivateKey.from_private_bytes(b64d(raw))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise ConfigError(f"no partnership root key at {self._root_path} (administrators only)") from exc

    def private_keys(self, agency_id: str) -> PrivateKeys:
        """The current private keys of a local agency."""
        return PrivateKeys.load(self.state_dir / "keys" / f"{agency_id}.json")

    def keyring(self, agency_id: str) -> list[PrivateKeys]:
        """Every generation of a local agency's private keys still held, current last."""
        folder = self.state_dir / "keys"
        earlier = [PrivateKeys.load(p) for p in sorted(folder.glob(f"{agency_id}.*.json"))]
        return [*earlier, self.private_keys(agency_id)]

    def save_private_keys(self, keys: PrivateKeys) -> None:
        """Store a local agency's current private keys (0600), keeping the previous generation beside them."""
        current = self.state_dir / "keys" / f"{keys.agency_id}.json"
        if current.exists():
            previous = PrivateKeys.load(current)
            current.rename(current.with_name(f"{keys.agency_id}.{previous.public().signing_key_id}.json"))
        keys.save(current)

    def destroy_private_keys(self, agency_id: str, signing_key_id: str) -> bool:
        """Destroy an earlier generation's private keys (retirement); return whether there were any."""
        path = self.state_dir / "keys" / f"{agency_id}.{signing_key_id}.json"
        if path.exists():
            path.unlink()
            return True
        return False


def keyring_by_encryption_key(keyring: list[PrivateKeys]) -> Mapping[str, PrivateKeys]:
    """Index a keyring by encryption key id (how an envelope names the key it was sealed for)."""
    return {keys.public().encryption_key_id: keys for keys in keyring}

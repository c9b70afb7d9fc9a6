"""
The partnership's agency directory: who is on the bus and with which public keys.

Routing needs to know which schools are onboarded (a school URN that is not in
the directory cannot be sent anything), and every envelope check needs the
sender's public keys.  The directory is reference data; it is stored as JSON in
the state directory beside each local agency's private key file.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.errors import ConfigError
from safebus.keys import PrivateKeys, PublicKeys


class AgencyKind(StrEnum):
    """The kinds of party on the bus."""

    POLICE = "police"
    SCHOOL = "school"
    ROUTER = "router"
    CHILDRENS_SERVICES = "childrens-services"
    DA_HUB = "da-hub"
    IDVA = "idva"
    MARAC = "marac"
    HEALTH = "health"


class Agency(BaseModel):
    """One directory entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    kind: AgencyKind
    name: str
    urn: str | None = Field(default=None, pattern=r"^\d{6}$", description="DfE URN, schools only")
    signing_public: str
    encryption_public: str

    def public_keys(self) -> PublicKeys:
        """Return this agency's public keys."""
        return PublicKeys.from_b64(agency_id=self.id, signing=self.signing_public, encryption=self.encryption_public)


class Directory(BaseModel):
    """All agencies of one partnership."""

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

    def public_keys(self) -> dict[str, PublicKeys]:
        """Return every agency's public keys by agency id."""
        return {a.id: a.public_keys() for a in self.agencies}


def entry_for(keys: PrivateKeys, *, kind: AgencyKind, name: str, urn: str | None = None) -> Agency:
    """Build the directory entry that publishes `keys`' public halves."""
    public = keys.public()
    return Agency(
        id=keys.agency_id, kind=kind, name=name, urn=urn,
        signing_public=public.signing_b64(), encryption_public=public.encryption_b64(),
    )


class PartnershipStore:
    """
    The directory and local private keys in a state directory.

    Layout: ``<state>/directory.json`` and ``<state>/keys/<agency-id>.json`` (0600).
    In production each agency keeps only its own key file; the development store
    keeps all of them so one machine can play every part.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def directory_path(self) -> Path:
        """Path of the directory file."""
        return self.state_dir / "directory.json"

    def exists(self) -> bool:
        """Return True when a directory has been written."""
        return self.directory_path.exists()

    def load_directory(self) -> Directory:
        """Read and validate the directory; raises ConfigError with the problem."""
        try:
            return Directory.model_validate_json(self.directory_path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no agency directory at {self.directory_path}; run 'safebus demo' or 'safebus partnership init'"
            ) from exc
        except ValidationError as exc:
            raise ConfigError(f"invalid agency directory {self.directory_path}: {exc.error_count()} errors") from exc

    def save_directory(self, directory: Directory) -> None:
        """Write the directory."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.directory_path.write_text(json.dumps(directory.model_dump(mode="json"), indent=2) + "\n")

    def private_keys(self, agency_id: str) -> PrivateKeys:
        """Load the private keys of a local agency."""
        return PrivateKeys.load(self.state_dir / "keys" / f"{agency_id}.json")

    def save_private_keys(self, keys: PrivateKeys) -> None:
        """Store a local agency's private keys (0600)."""
        keys.save(self.state_dir / "keys" / f"{keys.agency_id}.json")

"""
The Operation Encompass escalation policy: lead times, the file-transfer allowance and whom to tell.

Apart from the monitor (`safebus.consumers.encompass.monitor`) because the
policy is versioned data a partnership edits (``policy.toml``), read once at
start-up; the monitor only applies it.  Validation is strict: an unknown key
or a lead time out of range is refused rather than guessed at.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Contact", "DeliveryPolicy", "load_policy"]


class Contact(BaseModel):
    """A desk or officer the monitor tells (by id in the audit log; e-mail to reach them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    email: str


class DeliveryPolicy(BaseModel):
    """The escalation policy, as the versioned TOML file states it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    deputies_lead_minutes: int = Field(ge=0, le=24 * 60)
    resurface_lead_minutes: int = Field(ge=0, le=24 * 60)
    file_transfer_school_days: int = Field(ge=1, le=30)
    education_safeguarding_officer: Contact
    mash_education_desk: Contact
    elective_home_education_officer: Contact | None = None
    """Told of each home-educated child's notification; without one, the education safeguarding officer is."""

    @property
    def deputies_lead(self) -> timedelta:
        """How long before ``due_by`` deputies are alerted."""
        return timedelta(minutes=self.deputies_lead_minutes)

    @property
    def resurface_lead(self) -> timedelta:
        """How long before ``due_by`` an alert that waited over a closure is surfaced again."""
        return timedelta(minutes=self.resurface_lead_minutes)


def load_policy(path: Path | None = None) -> DeliveryPolicy:
    """The policy at `path`, or the packaged default."""
    text = path.read_text() if path else resources.files("safebus.consumers.encompass").joinpath(
        "policy.toml").read_text()
    return DeliveryPolicy.model_validate(tomllib.loads(text))

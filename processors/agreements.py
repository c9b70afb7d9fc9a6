"""
Information Sharing Agreements, loaded from versioned JSON files.

Rules are data: the router asks an agreement which clause applies and which
fields a recipient receives; it never hard-codes a field list or a lawful
basis.  A malformed agreement file stops start-up with the file and the
problem, rather than letting the processor route by a wrong rule.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safebus.errors import ConfigError
from safebus.schemas.decision import Outcome


class Clause(BaseModel):
    """One numbered provision of an agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome
    text: str = Field(min_length=10)


class Agreement(BaseModel):
    """An Information Sharing Agreement as the router applies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str
    purpose: str
    statute: str
    lawful_basis: tuple[str, ...] = Field(min_length=1)
    consent: Literal["not-sought", "required", "sought-not-required"]
    recipient_kind: str
    child_age_limit_years: int = Field(gt=0, le=25)
    fields: tuple[str, ...] = Field(min_length=1)
    clauses: dict[str, Clause] = Field(min_length=1)

    @model_validator(mode="after")
    def _fields_unique(self) -> Agreement:
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must not repeat")
        return self

    def clause(self, clause_id: str) -> Clause:
        """Return a clause; raises ConfigError if the agreement lacks it."""
        try:
            return self.clauses[clause_id]
        except KeyError:
            raise ConfigError(f"agreement {self.id} v{self.version} has no clause {clause_id!r}") from None

    def require_clauses(self, clause_ids: frozenset[str]) -> Agreement:
        """Return self if every clause the caller routes by exists; else raise ConfigError."""
        missing = sorted(clause_ids - set(self.clauses))
        if missing:
            raise ConfigError(f"agreement {self.id} v{self.version} lacks clauses: {', '.join(missing)}")
        return self


def load_agreement(name: str, *, text: str | None = None) -> Agreement:
    """
    Load the packaged agreement `name` (or validate `text` instead).

    Raises ConfigError naming each invalid location when the file is wrong.
    """
    if text is None:
        try:
            text = resources.files("safebus.processors").joinpath(f"agreements/{name}.json").read_text()
        except FileNotFoundError as exc:
            raise ConfigError(f"no agreement file named {name!r}") from exc
    try:
        return Agreement.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"agreement {name!r} is invalid: {problems}") from exc

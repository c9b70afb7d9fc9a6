"""
Information Sharing Agreements, as versioned TOML files an information-governance officer can read.

An agreement says why agencies share (purpose, lawful basis, consent stance,
retention, deadline) and, in ordered *rules*, exactly when and what: each rule
applies to each subject of one kind in an event (each child, the victim, or the
event itself), has conditions over named facts, an outcome, a recipient, and
the exact fields released.  For each subject the first rule whose conditions
all hold decides; every decision, shared or not, is recorded with the
agreement's id, version and the rule's clause.

Files live in ``processors/agreements/*.toml``.  `load_agreements` validates
each against this model *and* against what the engine can compute (facts,
recipients, fields): a wrong file stops the processor naming the file and the
clause, instead of routing by a rule that cannot mean what it says.
"""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safebus.errors import ConfigError
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import AgreementVersion, RulesetLoaded
from safebus.schemas.decision import Outcome

__all__ = [
    "Agreement",
    "Condition",
    "ConsentStance",
    "LawfulBasis",
    "Operator",
    "Rule",
    "Scalar",
    "SubjectKind",
    "agreement_files",
    "load_agreements",
    "parse_agreement",
    "ruleset_loaded",
]

ConsentStance = Literal["must-not-be-sought", "required", "not-required"]
Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not-in"]
SubjectKind = Literal["child", "victim", "event"]
Scalar = str | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LawfulBasis(_Strict):
    """The legal grounds an agreement rests on, recorded with every decision."""

    article_6: tuple[str, ...] = Field(min_length=1, description="UK GDPR Art 6 condition(s)")
    article_9: str | None = Field(default=None, description="UK GDPR Art 9 condition for special-category data")
    dpa_2018: str | None = Field(default=None, description="DPA 2018 Schedule 1 condition")
    statute: str | None = None

    def lines(self) -> tuple[str, ...]:
        """Every basis as one line each, in a fixed order."""
        return tuple(x for x in (*self.article_6, self.article_9, self.dpa_2018, self.statute) if x)


class Condition(_Strict):
    """`fact` `op` `value`, for example ``child.age < 18``."""

    fact: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]

    def holds(self, actual: Scalar | None) -> bool:
        """Whether the condition holds for a fact's value (an unknown value satisfies only ``!=`` and ``not-in``)."""
        expected = self.value
        if self.op in ("in", "not-in"):
            members = expected if isinstance(expected, tuple) else (expected,)
            return (actual in members) == (self.op == "in")
        if self.op == "==":
            return actual == expected
        if self.op == "!=":
            return actual != expected
        if not isinstance(actual, int) or isinstance(actual, bool) or not isinstance(expected, int):
            return False
        return {"<": actual < expected, "<=": actual <= expected, ">": actual > expected,
                ">=": actual >= expected}[self.op]

    def __str__(self) -> str:
        """As written in the agreement, for explanations."""
        return f"{self.fact} {self.op} {self.value!r}"


class Rule(_Strict):
    """One clause: when it applies, what it decides, who receives what."""

    clause: str = Field(pattern=r"^[0-9]+(\.[0-9]+)*$")
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    applies_to: tuple[str, ...] = Field(min_length=1, description="event types")
    for_each: SubjectKind
    when: tuple[Condition, ...] = ()
    outcome: Outcome
    recipient: str | None = Field(default=None, description="recipient selector, e.g. child.setting")
    recipient_kind: str
    fields: tuple[str, ...] = ()
    consent: ConsentStance | None = Field(default=None, description="overrides the agreement's stance")
    text: str = Field(min_length=10)

    @model_validator(mode="after")
    def _shares_name_a_recipient_and_fields(self) -> Rule:
        if self.outcome in (Outcome.SHARED, Outcome.DEFERRED, Outcome.ESCALATED):
            if not self.recipient or not self.fields:
                raise ValueError(f"clause {self.clause}: a {self.outcome.value} rule needs a recipient and fields")
        elif self.fields:
            raise ValueError(f"clause {self.clause}: a withheld rule releases no fields")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"clause {self.clause}: fields must not repeat")
        return self


class Agreement(_Strict):
    """An Information Sharing Agreement as the engine applies it."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str
    purpose: str
    parties: tuple[str, ...] = Field(min_length=2)
    lawful_basis: LawfulBasis
    consent: ConsentStance
    retention: str
    deadline: str
    options: dict[str, Scalar] = Field(default_factory=dict, description="partnership choices the rules read")
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _clauses_unique(self) -> Agreement:
        clauses = [r.clause for r in self.rules]
        if len(set(clauses)) != len(clauses):
            raise ValueError("clauses must be unique within an agreement")
        return self

    def consent_for(self, rule: Rule) -> ConsentStance:
        """The consent stance that applies to `rule`."""
        return rule.consent or self.consent


def parse_agreement(name: str, text: str) -> Agreement:
    """Parse and validate one agreement file's text; raise ConfigError naming each invalid location."""
    try:
        return Agreement.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"agreement {name}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"agreement {name} is invalid: {problems}") from exc


def load_agreements(files: Mapping[str, str] | None = None) -> tuple[Agreement, ...]:
    """
    Every agreement: the packaged ``agreements/*.toml`` by default, or `files` (name -> text).

    Raises ConfigError for any invalid file; agreement ids must be unique.
    """
    if files is None:
        files = agreement_files()
    agreements = tuple(parse_agreement(name, text) for name, text in files.items())
    ids = [a.id for a in agreements]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"agreement ids must be unique: {sorted(ids)}")
    if not agreements:
        raise ConfigError("no agreements found: the router will not share without one")
    return agreements


def agreement_files() -> dict[str, str]:
    """The packaged agreement files, name -> text."""
    folder = resources.files("safebus.processors").joinpath("agreements")
    return {entry.name: entry.read_text() for entry in sorted(folder.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".toml")}


def ruleset_loaded(files: Mapping[str, str], *, producer: str, at: datetime) -> RulesetLoaded:
    """
    The audit fact that routing runs under these agreement files.

    Its id is the digest of the whole set, so a restart under the same rules is
    the same fact (logged once) and any change to any file is a new one: the
    audit log then shows exactly when each rule version took effect.
    """
    agreements = load_agreements(files)
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    versions = tuple(AgreementVersion(agreement_id=a.id, version=a.version, sha256=digests[name])
                     for name, a in zip(files, agreements, strict=True))
    ruleset = hashlib.sha256("".join(f"{v.agreement_id}@{v.version}:{v.sha256}\n" for v in versions).encode())
    return RulesetLoaded(
        **event_metadata(RulesetLoaded, producer=producer, occurred_at=at, recorded_at=at,
                         event_id=str(uuid.UUID(bytes=ruleset.digest()[:16], version=5))),
        ruleset_sha256=ruleset.hexdigest(), agreements=versions,
    )

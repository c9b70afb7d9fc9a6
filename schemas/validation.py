"""
Validate a partner's JSON payload against the contract it declares.

A payload names its contract itself (``event_type`` and ``schema_version``), so
a supplier can check a file without our code knowing which system made it.
Validation runs the *published* JSON Schema with an independent implementation
(``jsonschema``, not pydantic), reporting every error with its path; when the
declared version is the current one it then applies the model's cross-field
rules (for example "professional judgement never lowers a DASH level"), which
JSON Schema cannot express.  A payload declaring an older release is also held
to today's text character rule (`safebus.schemas.text`), as the router holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as ValidationError_
from pydantic import ValidationError

from safebus.schemas.registry import CONTRACTS, by_type
from safebus.schemas.text import MULTI_LINE, SINGLE_LINE, TEXT_ERROR_TYPES

__all__ = ["Issue", "json_path", "published_schema", "validate_payload", "validation_detail"]

_FORMATS = Draft202012Validator.FORMAT_CHECKER


@dataclass(frozen=True)
class Issue:
    """One reason a payload is invalid, at a JSON path (``$`` is the payload itself)."""

    path: str
    message: str

    def __str__(self) -> str:
        """``path: message``, as printed for partners."""
        return f"{self.path}: {self.message}"


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """Render a location as ``$.children[0].date_of_birth``."""
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def validation_detail(exc: ValidationError) -> str:
    """Summarise a pydantic validation error by location and type only: never the offending values.

    Every stage that refuses a payload (the router, the inbox and queue workers)
    states its dead letter's detail this way, so it lives with the schemas.
    """
    return "; ".join(
        f"{json_path(err['loc'])}: {err['type']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )


_VERSION = re.compile(r"[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}")


def published_schema(event_type: str, version: str) -> dict[str, Any] | None:
    """
    The published JSON Schema of `event_type` at `version`, or None if there is none.

    `version` comes from an untrusted payload: only a plain ``MAJOR.MINOR.PATCH``
    is looked up, so a 20,000-character or ``../`` version is "none", not an
    OSError or a read outside the published schemas.
    """
    if not _VERSION.fullmatch(version):
        return None
    path = resources.files("safebus.schemas").joinpath(f"json/{event_type}/{version}.json")
    if not path.is_file():
        return None
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


_VALIDATORS_KEPT = 256
"""Validators kept built: one per published contract version (a few dozen today), so all of them fit. A bound,
not a dict, because the key comes from the payload: made-up versions take an entry (None) too, and at worst
evict a real validator, which is then built again; memory stays bounded whatever callers send."""


@lru_cache(maxsize=_VALIDATORS_KEPT)
def _validator(event_type: str, version: str) -> Draft202012Validator | None:
    """
    The validator of a published schema, built once: a validator built per payload (schema read, parsed and
    crawled each time) grew the gateway's native memory about 100 bytes a request (bench/README.md, soak).

    None for a version that is not published. jsonschema's validators hold no per-call state, so the
    gateway's threads may share one.
    """
    schema = published_schema(event_type, version)
    if schema is None:
        return None
    return Draft202012Validator(schema, format_checker=_FORMATS)


_POLICIES = {policy.pattern: policy for policy in (SINGLE_LINE, MULTI_LINE)}


def _message(error: ValidationError_) -> str:
    """The validator's message, except for the text character rule: jsonschema would echo the value and the
    look-ahead pattern; the policy names the character by code point and where it is, as the models do."""
    policy = _POLICIES.get(error.validator_value) if error.validator == "pattern" else None
    refused = policy.refusal(error.instance) if policy is not None and isinstance(error.instance, str) else None
    return refused.message if refused is not None else error.message


def _leaves(error: ValidationError_) -> list[ValidationError_]:
    """
    The errors to report for `error`: for an optional field (``anyOf`` with ``null``) that failed, the errors
    of the branch of the value's own type, so the path is the broken field (``$.location.town``) and not its
    parent; otherwise `error` itself.
    """
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    typed = [sub for sub in error.context if sub.validator != "type" or sub.relative_path]  # not "not null"
    return [leaf for sub in typed for leaf in _leaves(sub)] or [error]


def validate_payload(payload: object) -> list[Issue]:
    """Every problem with `payload`; an empty list means it is valid."""
    if not isinstance(payload, dict):
        return [Issue("$", "a payload must be a JSON object")]
    event_type, version = payload.get("event_type"), payload.get("schema_version")
    spec = by_type(event_type) if isinstance(event_type, str) else None
    if spec is None:
        known = ", ".join(sorted(c.event_type for c in CONTRACTS))
        return [Issue("$.event_type", f"{event_type!r} is not a published event type (known: {known})")]
    validator = _validator(spec.event_type, version) if isinstance(version, str) and _VERSION.fullmatch(version) \
        else None
    if validator is None:
        return [Issue("$.schema_version", f"{version!r} is not a published version of {spec.event_type}")]
    issues = [
        Issue(json_path(list(error.absolute_path)), _message(error))
        for error in sorted((leaf for found in validator.iter_errors(payload) for leaf in _leaves(found)),
                            key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if issues:
        return issues
    try:
        spec.model.model_validate_json(json.dumps(payload))
    except ValidationError as exc:
        # An older release is held to today's model only for the text character rule, which the router and
        # the gateway apply to every payload whatever version it declares (docs/adr/0006).
        return [
            Issue(json_path(err["loc"]), err["msg"])
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
            if version == spec.version or err["type"] in TEXT_ERROR_TYPES
        ]
    return []

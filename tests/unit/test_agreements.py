"""Agreement files are validated at start-up: a wrong file stops the processor with a clear message."""

from __future__ import annotations

import json

import pytest

from safebus.errors import ConfigError
from safebus.processors.agreements import load_agreement
from safebus.processors.encompass import ROUTED_CLAUSES


def _default() -> dict[str, object]:
    raw: dict[str, object] = json.loads(load_agreement("operation-encompass").model_dump_json())
    return raw


def test_default_agreement_loads_with_every_routed_clause() -> None:
    """The packaged Operation Encompass agreement is valid and complete."""
    agreement = load_agreement("operation-encompass")
    assert agreement.version == "1.0.0"
    assert set(agreement.clauses) >= ROUTED_CLAUSES
    assert agreement.consent == "not-sought"
    assert any("s.49A" in part for part in (agreement.statute, *agreement.lawful_basis))


@pytest.mark.parametrize(
    ("edit", "location"),
    [
        (lambda a: a.update(version="one"), "version"),
        (lambda a: a.update(lawful_basis=[]), "lawful_basis"),
        (lambda a: a.update(consent="maybe"), "consent"),
        (lambda a: a.update(unexpected="x"), "unexpected"),
        (lambda a: a["clauses"]["setting-unknown"].update(outcome="ignore"), "clauses.setting-unknown.outcome"),
        (lambda a: a.update(fields=["child_surname", "child_surname"]), "fields must not repeat"),
    ],
)
def test_invalid_agreement_names_the_problem(edit, location: str) -> None:  # type: ignore[no-untyped-def]
    """Each kind of mistake is reported with where it is."""
    raw = _default()
    edit(raw)
    with pytest.raises(ConfigError, match=location):
        load_agreement("broken", text=json.dumps(raw))


def test_missing_clause_is_reported() -> None:
    """The router refuses an agreement lacking a clause it routes by."""
    raw = _default()
    del raw["clauses"]["no-children"]  # type: ignore[attr-defined]
    agreement = load_agreement("partial", text=json.dumps(raw))
    with pytest.raises(ConfigError, match="no-children"):
        agreement.require_clauses(ROUTED_CLAUSES)


def test_unknown_agreement_file_is_reported() -> None:
    """Asking for an agreement that is not packaged is a clear error."""
    with pytest.raises(ConfigError, match="no agreement file"):
        load_agreement("does-not-exist")

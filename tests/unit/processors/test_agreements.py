"""Agreement files are validated at start-up: a wrong file stops the processor with a clear message."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from safebus.errors import ConfigError
from safebus.processors.agreements import load_agreements, parse_agreement
from safebus.processors.engine import validate

ENCOMPASS = resources.files("safebus.processors").joinpath("agreements/operation-encompass.toml").read_text()
EXAMPLE = Path(__file__).resolve().parents[3] / "schemas" / "examples" / "police.domestic-abuse-incident.json"


def test_the_default_set_loads() -> None:
    """The packaged agreements are valid, distinct and cover the partnership's flows."""
    agreements = {a.id: a for a in load_agreements()}
    assert set(agreements) == {"operation-encompass", "childrens-services-referral", "domestic-abuse-hub",
                               "marac-referral", "marac-actions"}
    assert agreements["operation-encompass"].consent == "must-not-be-sought"
    assert "s.49A" in (agreements["operation-encompass"].lawful_basis.statute or "")
    validate(tuple(agreements.values()))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('version = "2.2.0"', 'version = "two"'), "version"),
        (lambda t: t.replace('consent = "must-not-be-sought"', 'consent = "maybe"'), "consent"),
        (lambda t: t.replace('outcome = "deferred"', 'outcome = "ignored"'), "outcome"),
        (lambda t: t + '\nsurprise = "x"\n', "surprise"),
        (lambda t: t.replace('clause = "4.2"', 'clause = "4.1"'), "clauses must be unique"),
        (lambda t: t.replace("[[rules]]", "[[rules]", 1), "not valid TOML"),
    ],
)
def test_an_invalid_file_is_refused_naming_the_problem(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    """Each kind of mistake in a file is reported with where it is."""
    with pytest.raises(ConfigError, match=message):
        parse_agreement("operation-encompass.toml", edit(ENCOMPASS))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('fact = "child.setting"', 'fact = "child.favourite_colour"'), "unknown fact"),
        (lambda t: t.replace('recipient = "child.setting"', 'recipient = "parents"'), "unknown recipient"),
        (lambda t: t.replace('"child_present"]\ntext = "Every child',
                             '"child_present", "circumstances"]\ntext = "Every child'),
         "fields not available for a child"),
        (lambda t: t.replace('value = "option:school_age_from"', 'value = "option:nursery_age"', 1), "no option"),
        (lambda t: t.replace('fact = "child.age", op = ">="', 'fact = "victim.incidents_12m", op = ">="'),
         "is about a victim"),
    ],
)
def test_a_rule_the_engine_cannot_honour_stops_start_up(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    """Facts, recipients, fields and options must exist: the router refuses to route by a rule it cannot apply."""
    agreement = parse_agreement("operation-encompass.toml", edit(ENCOMPASS))
    with pytest.raises(ConfigError, match=message):
        validate((agreement,))


def test_a_school_can_never_be_given_more_than_the_encompass_fields() -> None:
    """Even a valid-looking rule that adds a field for a school is refused at start-up."""
    widened = ENCOMPASS.replace('recipient_kind = "school"\nfields = ["child_first_name"',
                                'recipient_kind = "school"\nfields = ["child_present", "child_first_name"', 1)
    widened = widened.replace('"incident_at", "child_present"]\ntext = "Every child',
                              '"incident_at", "police_reference"]\ntext = "Every child')
    with pytest.raises(ConfigError):
        validate((parse_agreement("operation-encompass.toml", widened),))


def test_rules_explain_names_each_decision_with_its_clause_and_basis(tmp_path: Path) -> None:
    """'safebus rules explain EVENT.json' prints every decision, the clause behind it and the rules tried."""
    out = subprocess.run([sys.executable, "-m", "safebus", "--state-dir", str(tmp_path), "rules", "explain",
                          str(EXAMPLE)], capture_output=True, text=True, check=True).stdout
    assert "operation-encompass v2.2.0 · child Ivy: SHARED -> school-900101  (clause 4.1 notify-setting)" in out
    assert "tried clause 3.1 not-a-child: did not apply — ✗ child.age >= 18 (is 10)" in out
    assert "Domestic Abuse Act 2021 s.49A" in out
    assert "marac-referral v1.1.0 · the victim: SHARED -> northdale-marac" in out

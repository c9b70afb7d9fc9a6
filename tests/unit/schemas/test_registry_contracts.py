"""Data contracts: published, fresh, immutable once released, compatible, and valid without our code."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from safebus.app import schema_publication as publication
from safebus.schemas.examples import EXAMPLES
from safebus.schemas.registry import CONTRACTS, Compatibility, by_type
from safebus.schemas.validation import validate_payload

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
INCIDENT = "police.domestic-abuse-incident"


def test_committed_contracts_are_fresh_released_and_compatible() -> None:
    """CI gate: every schema and example is regenerated, released versions are untouched, and nothing breaks."""
    assert publication.problems(SCHEMAS) == []


def test_every_contract_has_a_released_schema_and_an_example() -> None:
    """Each event family is published: a schema file, a lock entry and an example."""
    lock = publication.read_lock(SCHEMAS)
    for spec in CONTRACTS:
        assert publication.schema_path(SCHEMAS, spec.event_type, spec.version).exists()
        assert spec.version in lock[spec.event_type]
        assert publication.example_path(SCHEMAS, spec.event_type).exists()
    assert set(EXAMPLES) == {spec.event_type for spec in CONTRACTS}


@pytest.mark.parametrize("spec", CONTRACTS, ids=lambda s: s.event_type)
def test_examples_validate_with_an_independent_implementation(spec: Any) -> None:
    """The jsonschema library (not pydantic) accepts every committed example against its committed schema."""
    schema = json.loads(publication.schema_path(SCHEMAS, spec.event_type, spec.version).read_text())
    example = json.loads(publication.example_path(SCHEMAS, spec.event_type).read_text())
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
                  .iter_errors(example))
    assert errors == []
    assert example["event_type"] == spec.event_type
    assert schema["$id"] == f"urn:safebus:schema:{spec.event_type}:{spec.version}"
    assert schema["additionalProperties"] is False


def test_schemas_identify_themselves_and_their_version() -> None:
    """Each schema carries a $id with a semantic version and its compatibility rule."""
    for spec in CONTRACTS:
        schema = spec.json_schema()
        assert schema["$id"].endswith(f":{spec.version}")
        assert schema["x-safebus-compatibility"] in {c.value for c in Compatibility}
    assert by_type("audit.sharing-decision").compatibility is Compatibility.BACKWARD_TRANSITIVE  # type: ignore[union-attr]


class TestPartnerValidation:
    def test_valid_example_has_no_issues(self) -> None:
        """A correct payload validates cleanly."""
        payload = json.loads(publication.example_path(SCHEMAS, INCIDENT).read_text())
        assert validate_payload(payload) == []

    def test_every_error_is_reported_with_its_path(self) -> None:
        """All problems are listed at once, each at the JSON path where it is."""
        payload = json.loads(publication.example_path(SCHEMAS, INCIDENT).read_text())
        payload["children"][0]["date_of_birth"] = "04/03/2016"
        payload["risk_grade"] = "extreme"
        payload["adults"][1]["nickname"] = "x"
        del payload["narrative"]
        paths = {issue.path for issue in validate_payload(payload)}
        assert {"$.children[0].date_of_birth", "$.risk_grade", "$.adults[1]", "$"} <= paths

    def test_cross_field_rules_apply_after_the_schema(self) -> None:
        """Rules JSON Schema cannot express still reach the partner: judgement never lowers a DASH level."""
        payload = json.loads(publication.example_path(SCHEMAS, "risk.assessment-completed").read_text())
        payload["yes_count"], payload["level"] = 16, "medium"
        [issue] = validate_payload(payload)
        assert "may not be lower" in issue.message

    @pytest.mark.parametrize(
        ("payload", "path"),
        [([], "$"), ({"event_type": "police.unknown"}, "$.event_type"),
         ({"event_type": INCIDENT, "schema_version": "9.9.9"}, "$.schema_version")],
    )
    def test_undeclared_or_unknown_contracts_are_named(self, payload: object, path: str) -> None:
        """A payload that does not declare a published contract is told so."""
        [issue] = validate_payload(payload)
        assert issue.path == path

    def test_cli_exits_0_for_valid_and_1_for_invalid(self, tmp_path: Path) -> None:
        """'safebus schemas validate FILE' prints each error with its path and sets the exit status."""
        good = publication.example_path(SCHEMAS, INCIDENT)
        bad = tmp_path / "bad.json"
        payload = json.loads(good.read_text())
        payload["risk_grade"] = "extreme"
        bad.write_text(json.dumps(payload))
        run = [sys.executable, "-m", "safebus", "schemas", "validate"]
        ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
        assert failed.returncode == 1
        assert "$.risk_grade: 'extreme' is not one of" in failed.stdout


class TestGate:
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        """A scratch copy of the published contracts."""
        publication.generate(tmp_path)
        publication.release(tmp_path)
        return tmp_path

    def _older(self, root: Path, version: str, edit: Any) -> None:
        spec = by_type(INCIDENT)
        assert spec is not None
        document = copy.deepcopy(spec.json_schema())
        edit(document)
        path = publication.schema_path(root, INCIDENT, version)
        path.write_text(publication.render(document))

    def test_removed_field_fails_naming_the_path(self, root: Path) -> None:
        """If an earlier release had a field the current version dropped, the gate names it."""
        self._older(root, "0.9.0", lambda d: d["properties"].update(legacy_flag={"type": "boolean"}))
        [problem] = publication.incompatibilities(root)
        assert "not full-transitive compatible with 0.9.0" in problem
        assert "$.legacy_flag" in problem

    def test_retyped_nested_field_fails_naming_the_path(self, root: Path) -> None:
        """A changed type deep in a list of children is located precisely."""
        def retype(document: dict[str, Any]) -> None:
            document["$defs"]["Child"]["properties"]["present"] = {"type": "string"}

        self._older(root, "0.8.0", retype)
        problems = publication.incompatibilities(root)
        assert problems
        assert all("$.children[].present" in p for p in problems)

    def test_adding_an_optional_field_passes(self, root: Path) -> None:
        """An earlier release without an optional field of today's version is compatible."""
        self._older(root, "0.9.0", lambda d: d["properties"].pop("attended_at"))
        assert publication.incompatibilities(root) == []

    def test_editing_a_released_version_is_refused(self, root: Path) -> None:
        """Released schema files are immutable: a change must be a new version."""
        path = publication.schema_path(root, INCIDENT, by_type(INCIDENT).version)  # type: ignore[union-attr]
        path.write_text(path.read_text().replace('"maxLength": 20000', '"maxLength": 10'))
        assert any("is released and must not change" in p for p in publication.released_changes(root))

    def test_stale_generated_file_is_reported(self, root: Path) -> None:
        """A hand-edited or outdated generated file fails with the command that fixes it."""
        publication.example_path(root, INCIDENT).write_text("{}\n")
        assert publication.stale_files(root) == [f"examples/{INCIDENT}.json is stale: run 'safebus schemas generate'"]

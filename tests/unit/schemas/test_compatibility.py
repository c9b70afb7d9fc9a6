"""The compatibility gate: schema changes are classified backward/forward and breaks name the data path."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from safebus.schemas.compatibility import Break, Mode, check, check_transitive


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grade(StrEnum):
    """Risk grades as first released."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


class GradeNarrowed(StrEnum):
    """`medium` withdrawn."""

    STANDARD = "standard"
    HIGH = "high"


class GradeWidened(StrEnum):
    """`urgent` added."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class Child(_Closed):
    """v1 of a child on an incident."""

    first_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date


class Incident(_Closed):
    """v1 of the contract every test varies."""

    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


V1 = schema(Incident)


def paths(breaks: list[Break], direction: Literal["backward", "forward"] | None = None) -> set[str]:
    return {b.path for b in breaks if direction is None or b.direction == direction}


# --- variants of v1 (class names differ, so $defs names differ too: refs are resolved, not compared) ---


class WithOptional(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None
    recorded_at: datetime | None = None


class WithRequired(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None
    force: str


class WithoutNotes(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)


class ChildIntDob(_Closed):
    first_name: str = Field(min_length=1, max_length=100)
    date_of_birth: int


class WithIntDob(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[ChildIntDob] = Field(default_factory=list)
    notes: str | None = None


class ChildNoName(_Closed):
    date_of_birth: date


class WithChildNoName(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[ChildNoName] = Field(default_factory=list)
    notes: str | None = None


class ChildShortName(_Closed):
    first_name: str = Field(min_length=1, max_length=50)
    date_of_birth: date


class WithShortNames(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[ChildShortName] = Field(default_factory=list)
    notes: str | None = None


class ChildLongName(_Closed):
    first_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date


class WithLongNames(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[ChildLongName] = Field(default_factory=list)
    notes: str | None = None


class WithNarrowGrade(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: GradeNarrowed
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None


class WithNarrowGradeAndOptional(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: GradeNarrowed
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None
    recorded_at: datetime | None = None


class WithWideGrade(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: GradeWidened
    children: list[Child] = Field(default_factory=list)
    notes: str | None = None


class WithNotesRequired(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)
    notes: str | None


class WithNotesNotNull(_Closed):
    reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
    grade: Grade
    children: list[Child] = Field(default_factory=list)
    notes: str = ""


class WithOpenObject(Incident):
    model_config = ConfigDict(extra="allow")


# --- the rules ---


def test_unchanged_schema_passes_every_mode() -> None:
    """A schema is compatible with itself, and with a copy built from identically shaped, differently named classes."""
    class ChildCopy(_Closed):
        first_name: str = Field(min_length=1, max_length=100, title="Given name")
        date_of_birth: date

    class IncidentCopy(_Closed):
        reference: str = Field(pattern=r"^[A-Z]{2,5}-\d{6}$")
        grade: Grade
        children: list[ChildCopy] = Field(default_factory=list)
        notes: str | None = Field(default=None, description="Free text, now documented")

    for mode in Mode:
        assert check(V1, V1, mode) == []
        assert check(V1, schema(IncidentCopy), mode) == []


def test_adding_an_optional_field_passes_full() -> None:
    """Old documents lack it (allowed); old tolerant readers ignore it."""
    assert check(V1, schema(WithOptional), Mode.FULL) == []


def test_adding_a_required_field_breaks_backward_naming_it() -> None:
    """Old documents lack the new required field; tolerant old readers are unaffected."""
    breaks = check(V1, schema(WithRequired), Mode.FULL)
    assert paths(breaks) == {"$.force"}
    assert [b.direction for b in breaks] == ["backward"]
    assert check(V1, schema(WithRequired), Mode.FORWARD) == []


def test_removing_an_optional_field_breaks_backward_naming_it() -> None:
    """With additionalProperties: false, new rejects old documents that still carry the removed field."""
    breaks = check(V1, schema(WithoutNotes), Mode.FULL)
    assert paths(breaks, "backward") == {"$.notes"}
    assert paths(breaks, "forward") == set()
    assert "removed" in breaks[0].message


def test_removing_a_required_nested_field_breaks_both_ways() -> None:
    """Old documents carry it (backward) and old readers expect it (forward); the path goes through the list."""
    breaks = check(V1, schema(WithChildNoName), Mode.FULL)
    assert paths(breaks, "backward") == paths(breaks, "forward") == {"$.children[].first_name"}


def test_changing_a_type_inside_list_items_names_the_nested_path() -> None:
    """date (a formatted string) -> int breaks both ways at children[].date_of_birth."""
    breaks = check(V1, schema(WithIntDob), Mode.FULL)
    assert paths(breaks, "backward") == paths(breaks, "forward") == {"$.children[].date_of_birth"}
    assert all("string" in b.message and "integer" in b.message for b in breaks)


def test_narrowing_an_enum_breaks_backward_only() -> None:
    """Old documents may hold the withdrawn value; old readers accept the smaller set."""
    breaks = check(V1, schema(WithNarrowGrade), Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.grade", "backward")]
    assert '"medium"' in breaks[0].message


def test_widening_an_enum_passes_backward_but_breaks_forward_and_full() -> None:
    """New readers accept every old value; old readers reject the added one."""
    new = schema(WithWideGrade)
    assert check(V1, new, Mode.BACKWARD) == []
    for mode in (Mode.FORWARD, Mode.FULL):
        breaks = check(V1, new, mode)
        assert [(b.path, b.direction) for b in breaks] == [("$.grade", "forward")]
        assert '"urgent"' in breaks[0].message


def test_optional_to_required_breaks_backward() -> None:
    """Dropping the default makes old documents without the field invalid."""
    breaks = check(V1, schema(WithNotesRequired), Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.notes", "backward")]
    assert "required" in breaks[0].message


def test_required_to_optional_breaks_forward() -> None:
    """The reverse change: old readers expect a field new writers may leave out."""
    breaks = check(schema(WithNotesRequired), V1, Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.notes", "forward")]


def test_optional_x_to_x_breaks_backward_on_null() -> None:
    """`str | None` -> `str`: old documents holding null are rejected; old readers still accept every string."""
    breaks = check(V1, schema(WithNotesNotNull), Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.notes", "backward")]
    assert "null" in breaks[0].message


def test_tightened_max_length_breaks_backward_and_loosened_breaks_forward() -> None:
    """Bounds: narrowing rejects old data, widening lets new writers exceed what old readers accept."""
    tight = check(V1, schema(WithShortNames), Mode.FULL)
    assert [(b.path, b.direction) for b in tight] == [("$.children[].first_name", "backward")]
    assert "maxLength" in tight[0].message
    loose = check(V1, schema(WithLongNames), Mode.FULL)
    assert [(b.path, b.direction) for b in loose] == [("$.children[].first_name", "forward")]


def test_opening_additional_properties_is_full_compatible_and_closing_is_not() -> None:
    """Tolerant old readers ignore undeclared properties; a closed new schema rejects old extras."""
    assert check(V1, schema(WithOpenObject), Mode.FULL) == []
    breaks = check(schema(WithOpenObject), V1, Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.*", "backward")]


def test_integer_is_a_subset_of_number() -> None:
    """int -> float widens (backward only); float -> int narrows (forward only)."""
    old = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    new = {"type": "object", "properties": {"n": {"type": "number"}}, "additionalProperties": False}
    assert [(b.path, b.direction) for b in check(old, new, Mode.FULL)] == [("$.n", "forward")]
    assert [(b.path, b.direction) for b in check(new, old, Mode.FULL)] == [("$.n", "backward")]


def test_pattern_change_and_exclusive_bounds() -> None:
    """A changed regex breaks both ways; minimum 0 -> exclusiveMinimum 0 tightens (backward only)."""
    regex = check({"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^b"}, Mode.FULL)
    assert [b.direction for b in regex] == ["backward", "forward"]
    breaks = check({"type": "number", "minimum": 0}, {"type": "number", "exclusiveMinimum": 0}, Mode.FULL)
    assert [(b.direction, b.message) for b in breaks] == [("backward", "minimum tightened (>= 0 -> > 0)")]


def test_unrecognised_keyword_that_differs_breaks_both_ways() -> None:
    """The gate is conservative about keywords it does not model."""
    breaks = check({"type": "integer", "multipleOf": 2}, {"type": "integer", "multipleOf": 3}, Mode.FULL)
    assert {b.direction for b in breaks} == {"backward", "forward"}
    assert all("multipleOf" in b.message for b in breaks)


def test_transitive_check_names_the_historic_version_that_breaks() -> None:
    """v2 narrowed the enum (forward-compatible); new adds an optional field: fine against v2, not against v1."""
    v2 = schema(WithNarrowGrade)
    new = schema(WithNarrowGradeAndOptional)
    assert check(v2, new, Mode.FULL) == []
    assert [(i, b.path, b.direction) for i, b in check_transitive([V1, v2], new, Mode.BACKWARD)] == [
        (0, "$.grade", "backward")
    ]
    assert check_transitive([V1, schema(WithOptional)], schema(WithOptional), Mode.FULL) == []


# --- every real-ish shape is FULL-compatible with itself ---


class Address(_Closed):
    lines: tuple[str, ...] = Field(min_length=1, max_length=4)
    postcode: str = Field(pattern=r"^[A-Z0-9 ]{5,8}$")


class Person(_Closed):
    name: str
    address: Address | None = None
    aliases: set[str] = Field(default_factory=set)


class Police(_Closed):
    kind: Literal["police"]
    force: str


class School(_Closed):
    kind: Literal["school"]
    urn: str = Field(pattern=r"^\d{6}$")


class Referral(_Closed):
    """A nested model with a discriminated union, tuples, dicts, bounds and Literals."""

    source: Police | School = Field(discriminator="kind")
    subject: Person
    contacts: list[Person] = Field(max_length=20)
    location: tuple[float, float] | None = None
    scores: dict[str, int] = Field(default_factory=dict)
    risk: float = Field(gt=0, le=1)
    grade: Grade = Grade.STANDARD
    channel: Literal["phone", "email"] = "email"


class Node(_Closed):
    """A recursive model."""

    label: str
    parent: Node | None = None
    children: list[Node] = Field(default_factory=list)


@pytest.mark.parametrize("model", [Incident, Referral, Node, WithOpenObject])
def test_real_ish_models_are_full_compatible_with_themselves(model: type[BaseModel]) -> None:
    """No false positives on the shapes pydantic emits: refs, unions, tuples, dicts, sets, recursion."""
    assert check(schema(model), schema(model), Mode.FULL) == []


def test_recursive_schemas_terminate_and_still_report() -> None:
    """A change inside a recursive model is found once, at the outermost path."""
    class NodeV2(_Closed):
        label: int
        parent: NodeV2 | None = None
        children: list[NodeV2] = Field(default_factory=list)

    breaks = check(schema(Node), schema(NodeV2), Mode.FULL)
    assert [(b.path, b.direction) for b in breaks] == [("$.label", "backward"), ("$.label", "forward")]

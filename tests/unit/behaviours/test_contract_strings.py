"""Names and short text fields refuse NUL, control, line-break and bidi characters at the contract, naming the path."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from safebus.app.wiring import Settings, build_handler, build_police_publisher
from safebus.consumers.audit.facts import fact_from_dead_letter
from safebus.processors.handler import IncidentHandler
from safebus.producers.synthetic import IncidentFactory
from safebus.records import DLQ_DETAIL, DLQ_ORIGIN_TOPIC, DLQ_REASON, DLQ_STAGE, Origin, Record
from safebus.schemas.police import DomesticAbuseIncident
from safebus.schemas.registry import CONTRACTS, by_type
from safebus.schemas.text import MULTI_LINE, SINGLE_LINE, scrub
from safebus.schemas.validation import json_path, validate_payload
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership
from tests.unit.producers.gateway.test_server import Running, example, post, running  # noqa: F401 - `running` is a fixture

EXAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "examples"
INCIDENT = "police.domestic-abuse-incident"

BAD = {  # one of each refused class, with the error type the models give
    "nul": ("\x00", "nul_character"),
    "bell": ("\x07", "control_character"),
    "escape": ("\x1b", "control_character"),
    "delete": ("\x7f", "control_character"),
    "c1-next-line": ("\x85", "control_character"),
    "line-feed": ("\n", "line_break"),
    "carriage-return": ("\r", "line_break"),
    "tab": ("\t", "control_character"),
    "line-separator": ("\u2028", "line_break"),
    "right-to-left-override": ("\u202e", "bidi_control"),
    "left-to-right-embedding": ("\u202a", "bidi_control"),
    "first-strong-isolate": ("\u2068", "bidi_control"),
    "pop-directional-isolate": ("\u2069", "bidi_control"),
    "right-to-left-mark": ("\u200f", "bidi_control"),
    "arabic-letter-mark": ("\u061c", "bidi_control"),
}
FREE_TEXT_ALLOWED = {"line-feed", "carriage-return", "tab"}

NAME_FIELDS = (  # (path in the incident, setter) for every name and short text field of a police incident
    ("children", 0, "first_name"), ("children", 0, "surname"), ("children", 0, "school_name_as_recorded"),
    ("children", 0, "where_during_incident"), ("adults", 0, "first_name"), ("adults", 0, "surname"),
    ("location", "line1"), ("location", "town"),
)
FREE_TEXT_FIELDS = (("narrative",), ("children", 0, "voice_of_child"))

GOOD_NAMES = (
    "Zoë", "Siân O'Brien", "Anne-Marie", "D'Arcy-Łukasz", "Nguyễn Thị Minh", "Мария", "محمد", "יעל", "李小龙",
    "Ngā Tūpuna", "José María", "Ægir", "\uff21\uff49", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
)  # the last two: full-width Latin, and Persian whose ZWNJ (U+200C) is spelling, not a control


def _incident() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EXAMPLES / f"{INCIDENT}.json").read_text())
    payload["children"][0].setdefault("where_during_incident", "upstairs")
    payload["children"][0].setdefault("voice_of_child", "I hid")
    payload["children"][0].setdefault("school_name_as_recorded", "Northdale Primary")
    return payload


def _set(payload: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def _model_errors(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    try:
        DomesticAbuseIncident.model_validate_json(json.dumps(payload))
    except ValidationError as exc:
        return [(json_path(e["loc"]), e["type"], e["msg"]) for e in exc.errors(include_url=False)]
    return []


class TestNames:
    @pytest.mark.parametrize("path", NAME_FIELDS, ids=lambda p: json_path(p))
    @pytest.mark.parametrize("bad", BAD, ids=str)
    def test_each_bad_character_is_refused_at_each_name_field_naming_the_path(
            self, path: tuple[str | int, ...], bad: str) -> None:
        """The model gives exactly one error, at the field's JSON path, of the character's class, saying where."""
        character, kind = BAD[bad]
        [(where, error_type, message)] = _model_errors(_set(_incident(), path, f"Ann{character}ie"))
        assert where == json_path(path)
        assert error_type == kind
        assert f"(U+{ord(character):04X}) at character 4" in message

    @pytest.mark.parametrize("path", NAME_FIELDS, ids=lambda p: json_path(p))
    @pytest.mark.parametrize("bad", BAD, ids=str)
    def test_the_published_schema_refuses_them_too_without_our_models(
            self, path: tuple[str | int, ...], bad: str) -> None:
        """`safebus schemas validate` (jsonschema on the published file) names the path, not the look-ahead."""
        character, _ = BAD[bad]
        [issue] = validate_payload(_set(_incident(), path, f"Ann{character}ie"))
        assert issue.path == json_path(path)
        assert issue.message.startswith("contains ")
        assert character not in issue.message
        assert "(?!" not in issue.message

    @pytest.mark.parametrize("name", GOOD_NAMES)
    def test_real_names_in_any_script_are_accepted(self, name: str) -> None:
        """Accents, apostrophes, hyphens, non-Latin scripts and joiners are names, not attacks."""
        payload = _set(_set(_incident(), ("children", 0, "first_name"), name), ("adults", 0, "surname"), name)
        assert _model_errors(payload) == []
        assert validate_payload(payload) == []

    def test_a_payload_declaring_the_old_release_is_held_to_the_rule_too(self) -> None:
        """`schemas validate` of a 1.0.0 payload (whose schema had no pattern) names the path, as the router would."""
        payload = _set({**_incident(), "schema_version": "1.0.0"}, ("children", 0, "surname"), "Cal\u202eloway")
        assert [(i.path, i.message) for i in validate_payload(payload)] == [(
            "$.children[0].surname", "contains a bidirectional-text embedding or override (U+202E) at character 4")]
        assert validate_payload({**_incident(), "schema_version": "1.0.0"}) == []

    def test_a_trailing_line_feed_is_refused_by_the_published_pattern(self) -> None:
        """Python's `$` matches before a final newline; the published look-ahead pattern does not let it through."""
        [issue] = validate_payload(_set(_incident(), ("children", 0, "first_name"), "Ann\n"))
        assert issue.path == "$.children[0].first_name"
        assert "line feed" in issue.message


class TestFreeText:
    @pytest.mark.parametrize("path", FREE_TEXT_FIELDS, ids=lambda p: json_path(p))
    @pytest.mark.parametrize("bad", BAD, ids=str)
    def test_free_text_may_have_paragraphs_but_no_other_control_or_bidi(
            self, path: tuple[str | int, ...], bad: str) -> None:
        """Narratives keep LF, CR and TAB; NUL, other controls, separators and bidi controls are refused."""
        character, kind = BAD[bad]
        payload = _set(_incident(), path, f"First line.{character}Second line.")
        if bad in FREE_TEXT_ALLOWED:
            assert _model_errors(payload) == []
            assert validate_payload(payload) == []
        else:
            [(where, error_type, _)] = _model_errors(payload)
            assert (where, error_type) == (json_path(path), kind)
            assert [issue.path for issue in validate_payload(payload)] == [json_path(path)]


@pytest.mark.parametrize("spec", [s for s in CONTRACTS if s.publishers - {"router"}], ids=lambda s: s.event_type)
def test_no_partner_contract_has_a_string_field_that_takes_a_bidi_override_or_nul(spec: Any) -> None:
    """Every string a partner writes (names, references, e-mail, free text) is refused with one at its path."""
    example_payload: dict[str, Any] = json.loads((EXAMPLES / f"{spec.event_type}.json").read_text())
    for path in _string_leaves(example_payload):
        for character in ("\x00", "\u202e"):
            payload = _set(example_payload, path, f"{_get(example_payload, path)}{character}")
            with pytest.raises(ValidationError) as refused:
                spec.model.model_validate_json(json.dumps(payload))
            assert json_path(path) in {json_path(e["loc"]) for e in refused.value.errors()}, path


def _string_leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, str):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _string_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _string_leaves(value, (*path, index))


def _get(node: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def test_the_gateway_tells_a_police_supplier_the_path_and_sends_nothing(running: Running) -> None:  # noqa: F811
    """422 with the error at `$.children[0].first_name` saying what the character is; nothing reaches the bus."""
    for version in ("1.0.0", by_type(INCIDENT).version):  # type: ignore[union-attr] # an old release, and today's
        payload = example(INCIDENT, schema_version=version)
        payload["children"][0]["first_name"] = "Ann\u202eeinna"
        answer = post(running, payload)
        assert answer.status == 422
        assert answer.body["errors"] == [{
            "path": "$.children[0].first_name",
            "message": "contains a bidirectional-text embedding or override (U+202E) at character 4"}]
    assert running.published() == []


def test_the_router_dead_letters_such_an_incident_with_a_readable_reason(
        partnership: Partnership, factory: IncidentFactory) -> None:
    """A sealed incident with a NUL in a child's name is one dead letter: schema-violation, path and class."""
    names = TopicNames(prefix="t")
    settings = Settings(state_dir=partnership.state_dir, bootstrap="unused:9092", names=names)
    handler: IncidentHandler = build_handler(settings, clock=lambda: FIXED_NOW)
    publisher = build_police_publisher(settings, clock=lambda: FIXED_NOW)
    incident = factory.incident("schools")
    child = incident.children[0].model_copy(update={"first_name": "Ann\x00ie"})
    record = publisher.seal_incident(incident.model_copy(update={"children": (child, *incident.children[1:])}))

    [output] = handler.handle(record.value, Origin(topic=record.topic, partition=0, offset=3, key=record.key))

    headers = {k: v.decode() for k, v in output.headers}
    assert output.topic == names.deadletter
    assert (headers[DLQ_STAGE], headers[DLQ_REASON]) == ("validate", "schema-violation")
    assert headers[DLQ_DETAIL] == "$.children[0].first_name: nul_character"


def test_a_dead_letter_with_hostile_labels_is_still_recorded_with_safe_text() -> None:
    """The sequencer's fact keeps a dead letter whose headers hold CR/LF, NUL or a bidi override, made safe."""
    record = Record(topic="t.deadletter", partition=0, offset=9, key=b"k", value=b"raw", headers={
        DLQ_REASON: b"schema-violation\r\nforged: line", DLQ_STAGE: b"validate\xe2\x80\xae",
        DLQ_DETAIL: b"$.children[0].first_name: nul_character\n\x00", DLQ_ORIGIN_TOPIC: b"t.ingress\x00"})

    fact = fact_from_dead_letter(record, observed_at=FIXED_NOW)

    assert (fact.reason, fact.stage) == ("schema-violation\ufffd\ufffdforged: line", "validate\ufffd")
    assert fact.detail == "$.children[0].first_name: nul_character\n\ufffd"
    assert fact.origin_topic == "t.ingress\ufffd"
    assert scrub("Ann\u2069", SINGLE_LINE) == "Ann\ufffd"
    assert scrub("a\tb", MULTI_LINE) == "a\tb"


def test_the_gate_tolerates_adding_the_text_rule_and_nothing_else() -> None:
    """Adding the character rule to a string passes the gate; another new pattern, or removing it, still breaks."""
    from safebus.schemas.compatibility import Mode, check

    def schema(**string: Any) -> dict[str, Any]:
        return {"type": "object", "properties": {"name": {"type": "string", **string}}}

    tolerated = frozenset({SINGLE_LINE.pattern})
    assert check(schema(), schema(pattern=SINGLE_LINE.pattern), Mode.FULL, tolerated_patterns=tolerated) == []
    assert check(schema(), schema(pattern="^[a-z]+$"), Mode.FULL, tolerated_patterns=tolerated)
    assert check(schema(pattern=SINGLE_LINE.pattern), schema(), Mode.FULL, tolerated_patterns=tolerated)
    assert check(schema(), schema(pattern=SINGLE_LINE.pattern), Mode.FULL)  # only when the caller tolerates it

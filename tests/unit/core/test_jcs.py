"""RFC 8785 canonical JSON: the RFC's own examples, cyberphone's test data, and what must be refused."""

from __future__ import annotations

import enum
import json
import re
import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from safebus.jcs import MAX_DEPTH, canonical_json, canonical_model


def _double(bits: str) -> float:
    """The IEEE-754 double with big-endian bit pattern `bits` (16 hex digits)."""
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]

# cyberphone/json-canonicalization testdata/input/*.json -> testdata/output/*.json (the RFC author's test suite).
CYBERPHONE = {
    "french": (
        '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",\n'
        '  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
        '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
        '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}',
    ),
    "structures": (
        '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n'
        '  "111": [ { } ],\n  "A": { }\n}',
        '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
    "unicode": (
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
    ),
    "values": (
        '{\n  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],\n'
        '  "escaping": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        '  "literals": [null, true, false]\n}',
        '{"escaping":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],'
        '"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
    ),
    "weird": (
        '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n'
        '  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n'
        '  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\U0001f602":"Smiley",'
        '"\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
}


class TestNumbers:
    @pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
    def test_appendix_b(self, bits: str, expected: str) -> None:
        """Every finite row of RFC 8785 Appendix B serialises exactly as the RFC says."""
        assert canonical_json(_double(bits)) == expected.encode()

    @pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
    def test_nan_and_infinity_are_refused(self, bits: str) -> None:
        """NaN and ±Infinity (Appendix B's error rows) have no JSON form."""
        with pytest.raises(ValueError, match="finite doubles only"):
            canonical_json({"n": _double(bits)})

    def test_integers_within_double_precision(self) -> None:
        """Integers up to ±2**53 are written in full; floats with integral values lose the '.0'."""
        assert canonical_json([0, -1, 2**53, -(2**53), 56.0, 1e20]) == (
            b"[0,-1,9007199254740992,-9007199254740992,56,100000000000000000000]")

    @pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**60, 10**21, 10**400])
    def test_integers_that_would_change_as_doubles_are_refused(self, value: int) -> None:
        """2**53 + 1 is no double, 2**60's double prints as ...847000, 10**21's as 1e+21: refused, not altered."""
        with pytest.raises(ValueError, match=r"\$\.count: integer .* would be written as a different number"):
            canonical_json({"count": value})

    @pytest.mark.parametrize("value", [1.1003210160455866e16, 5.867664105759666e16, 1e20])
    def test_large_integers_read_back_from_canonical_doubles_are_kept(self, value: float) -> None:
        """json.loads reads a large canonical double back as an int; that int canonicalises to the same text."""
        text = canonical_json(value)
        assert isinstance(json.loads(text), int)
        assert canonical_json(json.loads(text)) == text
        assert canonical_json(10**20) == canonical_json(1e20) == b"100000000000000000000"

    @given(st.floats(allow_nan=False, allow_infinity=False))
    @settings(deadline=None)
    def test_every_finite_double_round_trips(self, value: float) -> None:
        """Parsing the canonical text gives back the same double (the digits are the shortest exact ones)."""
        text = canonical_json(value).decode()
        assert float(text) == value
        assert "e" not in text or ("e+" in text or "e-" in text)  # ECMAScript always signs the exponent

    @given(st.integers(-(2**53), 2**53))
    @settings(deadline=None)
    def test_integral_doubles_print_like_integers(self, value: int) -> None:
        """Below 1e21 an integral double has no exponent and no '.0', exactly like the int."""
        assert canonical_json(float(value)) == canonical_json(value) == str(value).encode()


class TestStrings:
    def test_rfc_8785_section_3_2_2_example(self) -> None:
        """The RFC's §3.2.2 input gives the §3.2.4 output (members sorted, numbers and escapes canonical)."""
        source = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
                  ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
                  ' "literals": [null, true, false]}')
        expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
        assert canonical_json(json.loads(source)) == expected.encode("utf-8")

    def test_only_the_rfc_escapes_are_used(self) -> None:
        """Quote, backslash and the five short escapes; other controls as lower-case \\u00xx; DEL and U+2028 raw."""
        text = "\"\\\b\f\n\r\t\x00\x1f\x7f\u2028/<>&"
        assert canonical_json(text) == '"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u2028/<>&"'.encode()

    def test_lone_surrogate_is_refused(self) -> None:
        """A lone surrogate is not Unicode text; it cannot be UTF-8 encoded, so it is refused."""
        with pytest.raises(ValueError, match="lone surrogate"):
            canonical_json({"name": "\ud83d"})

    @given(st.dictionaries(st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])),
                           st.text() | st.integers(-(2**53), 2**53) | st.booleans() | st.none(), max_size=8))
    @settings(deadline=None)
    def test_agrees_with_json_dumps_where_that_is_canonical(self, value: dict[str, object]) -> None:
        """For BMP names and no floats, Python's sorted, compact, non-ASCII json.dumps is already RFC 8785."""
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical_json(value) == expected


class TestObjects:
    def test_rfc_8785_section_3_2_3_sorting_example(self) -> None:
        """Names sort by UTF-16 code units: the emoji (D83D DE00) comes before U+FB33, unlike code-point order."""
        value = {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        }
        expected = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
                    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
                    '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')
        assert canonical_json(value) == expected.encode("utf-8")
        # Python's own sort_keys puts the emoji last: the reason this module exists.
        assert json.dumps(value, sort_keys=True, ensure_ascii=False).endswith('"Emoji: Grinning Face"}')

    @pytest.mark.parametrize("name", sorted(CYBERPHONE))
    def test_cyberphone_testdata(self, name: str) -> None:
        """Each input file of the RFC author's test suite canonicalises to its published output."""
        source, expected = CYBERPHONE[name]
        assert canonical_json(json.loads(source)) == expected.encode("utf-8")

    def test_member_order_does_not_matter(self) -> None:
        """The same members inserted in any order give the same bytes."""
        assert canonical_json({"b": 1, "a": [True, None]}) == canonical_json({"a": [True, None], "b": 1})

    def test_tuples_and_enums_serialise_as_their_json_values(self) -> None:
        """A tuple is an array; str and int enum members are their values, not their names."""
        class Kind(str, enum.Enum):  # noqa: UP042 - the mixin formats as "Kind.POLICE" in f-strings; StrEnum doesn't
            POLICE = "police"

        class Agency(enum.StrEnum):
            SCHOOL = "school"

        class Level(enum.IntEnum):
            HIGH = 3

        assert canonical_json({Kind.POLICE: (Kind.POLICE, Level.HIGH, Agency.SCHOOL)}) == (
            b'{"police":["police",3,"school"]}')

    @given(st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
        max_leaves=20))
    @settings(max_examples=150, deadline=None)
    def test_canonical_text_reads_back_to_the_same_value_and_is_a_fixed_point(self, value: object) -> None:
        """Parsing the output gives an equal value, and canonicalising that again changes nothing."""
        out = canonical_json(value)
        parsed = json.loads(out)
        assert _same(parsed, value)
        assert canonical_json(parsed) == out
        outside_strings = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', out)
        assert not re.search(rb"\s", outside_strings), "no whitespace between tokens"


def _same(parsed: object, value: object) -> bool:
    """Equal JSON values, where a double may come back as an int (json.loads reads digits without '.' or 'e' so)."""
    if isinstance(value, float):
        return isinstance(parsed, int | float) and not isinstance(parsed, bool) and float(parsed) == value
    if isinstance(value, list):
        return isinstance(parsed, list) and len(parsed) == len(value) and all(map(_same, parsed, value))
    if isinstance(value, dict):
        return (isinstance(parsed, dict) and parsed.keys() == value.keys()
                and all(_same(parsed[key], value[key]) for key in value))
    return parsed == value and type(parsed) is type(value)


class TestRefused:
    @pytest.mark.parametrize(("value", "message"), [
        (b"bytes", r"\$: bytes is not a JSON value"),
        ({"at": datetime(2026, 11, 18, tzinfo=UTC)}, r"\$\.at: datetime is not a JSON value"),
        ([Decimal("1.5")], r"\$\[0\]: Decimal is not a JSON value"),
        ({"s": {1, 2}}, r"\$\.s: set is not a JSON value"),
        ({1: "one"}, r"object name 1 is a int, not a string"),
        ({"\udc00": 1}, "lone surrogate"),
    ])
    def test_values_outside_the_json_data_model(self, value: object, message: str) -> None:
        """Non-JSON types and non-string names raise ValueError naming where they are, never coerced."""
        with pytest.raises(ValueError, match=message):
            canonical_json(value)

    def test_nesting_is_capped(self) -> None:
        """Absurd nesting is a clear ValueError, not a RecursionError deep in the stack."""
        value: list[object] = []
        for _ in range(MAX_DEPTH + 1):
            value = [value]
        with pytest.raises(ValueError, match="nested deeper than"):
            canonical_json(value)


class _Fact(BaseModel):
    """Field order, a float, an astral and a non-ASCII name: where model_dump_json and RFC 8785 part ways."""

    zeta: float
    alpha: str
    nested: dict[str, int]


def test_a_model_is_written_as_the_canonical_form_of_its_json() -> None:
    """Every audit writer publishes these bytes, so a verifier that re-canonicalises what it read gets them back."""
    fact = _Fact(zeta=1e21, alpha="Ysgol Gymraeg \U0001f3eb", nested={"\ufb33": 1, "\U0001f600": 2})
    out = canonical_model(fact)
    assert out == '{"alpha":"Ysgol Gymraeg \U0001f3eb","nested":{"\U0001f600":2,"\ufb33":1},"zeta":1e+21}'.encode()
    assert out != fact.model_dump_json().encode()
    assert canonical_json(json.loads(out)) == out

"""
Which characters a contract's text may hold: the one place the rule is stated.

Why: a child's name travels from a police system to a school's screen, an
e-mail notice and the audit dashboard.  A NUL truncates it in some readers, a
CR/LF forges a second line in a log or an e-mail header, and a bidirectional
override (U+202E) makes "Ann" display as something else than the bytes say
(the "Trojan Source" trick).  No register legitimately holds them, so the
contracts refuse them at the edge, naming the JSON path, instead of every
reader escaping them its own way.

Two kinds of text:

- **single line** (`Name` and other short fields: names, references, ids,
  places): no C0 or C1 control character at all (NUL, TAB, CR, LF, ESC, DEL,
  NEL, ...), no line or paragraph separator (U+2028/U+2029) and no
  bidirectional control: the embeddings and overrides U+202A-U+202E, the
  isolates U+2066-U+2069 and the invisible marks U+200E, U+200F and U+061C.
  Accents, apostrophes, hyphens and every script are fine.
- **multi line** (`Text` and the police narrative, what the child said, a
  rationale): the same, except that LF, CR and TAB are allowed, because
  free text has paragraphs.

Both also refuse a lone UTF-16 surrogate (a ``"\\ud800"`` escape in JSON), which
no UTF-8 text can carry; JSON Schema cannot say that portably, so only the
models check it.

The published JSON Schemas carry the rule as a ``pattern`` (a negative
look-ahead, so that Python's ``$`` quirk before a final newline cannot let a
trailing LF through); the models check it with a readable message and an error
type per class (``nul_character``, ``line_break``, ``control_character``,
``bidi_control``, ``lone_surrogate``), which the router's dead letters carry as
their detail.  Adding exactly these patterns to a field is the one narrowing
the compatibility gate accepts (`TOLERATED_PATTERNS`, docs/adr/0006): a
document that breaks them was never a valid record, only a hostile one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["MULTI_LINE", "SINGLE_LINE", "TEXT_ERROR_TYPES", "TOLERATED_PATTERNS", "CharacterPolicy", "Refusal", "scrub"]

# (first, last, error type, what it is): the characters refused, in one table.
_RANGES: tuple[tuple[int, int, str, str], ...] = (
    (0x00, 0x00, "nul_character", "NUL"),
    (0x09, 0x09, "control_character", "a tab"),
    (0x0A, 0x0A, "line_break", "a line feed"),
    (0x0D, 0x0D, "line_break", "a carriage return"),
    (0x01, 0x1F, "control_character", "a control character"),
    (0x7F, 0x9F, "control_character", "a control character"),
    (0x2028, 0x2029, "line_break", "a line or paragraph separator"),
    (0x061C, 0x061C, "bidi_control", "a bidirectional-text mark"),
    (0x200E, 0x200F, "bidi_control", "a bidirectional-text mark"),
    (0x202A, 0x202E, "bidi_control", "a bidirectional-text embedding or override"),
    (0x2066, 0x2069, "bidi_control", "a bidirectional-text isolate"),
)
_FREE_TEXT_CONTROLS = frozenset({0x09, 0x0A, 0x0D})
"""What multi-line text may hold that a single line may not: tab, line feed, carriage return."""


@dataclass(frozen=True)
class Refusal:
    """Why a string was refused: an error type, a readable message, and the character's position."""

    type: str
    message: str
    position: int


def _class_of(code: int) -> tuple[str, str]:
    return next((kind, what) for first, last, kind, what in _RANGES if first <= code <= last)


def _ecma(code: int) -> str:
    return f"\\u{code:04x}"


@dataclass(frozen=True)
class CharacterPolicy:
    """
    A set of refused characters, usable as a pydantic annotation.

    As an annotation it adds an after-validator (a readable refusal) and the
    matching ``pattern`` to the JSON Schema, so partners without our code
    refuse the same strings.
    """

    name: str
    allowed: frozenset[int] = frozenset()

    def _intervals(self) -> list[tuple[int, int]]:
        refused = sorted({code for first, last, _, _ in _RANGES for code in range(first, last + 1)} - self.allowed)
        intervals: list[tuple[int, int]] = []
        for code in refused:
            if intervals and intervals[-1][1] == code - 1:
                intervals[-1] = (intervals[-1][0], code)
            else:
                intervals.append((code, code))
        return intervals

    @property
    def character_class(self) -> str:
        """The refused characters as an ECMA-262 (and Python) character class."""
        parts = [_ecma(a) if a == b else f"{_ecma(a)}-{_ecma(b)}" for a, b in self._intervals()]
        return "[" + "".join(parts) + "]"

    @property
    def pattern(self) -> str:
        """The JSON Schema ``pattern``: no refused character anywhere (a look-ahead, not ``^...$``)."""
        return rf"^(?![\s\S]*{self.character_class})"

    def refusal(self, value: str) -> Refusal | None:
        """Why `value` is refused, naming the first offending character by code point (never echoing text)."""
        found = _compiled(self).search(value)
        if found is not None:
            code = ord(found.group())
            kind, what = _class_of(code)
            hint = "; this field is a single line" if kind == "line_break" else ""
            return Refusal(kind, f"contains {what} (U+{code:04X}) at character {found.start() + 1}{hint}",
                           found.start())
        surrogate = _SURROGATE.search(value)
        if surrogate is not None:
            return Refusal("lone_surrogate", f"contains a lone surrogate (U+{ord(surrogate.group()):04X}) at "
                           f"character {surrogate.start() + 1}, which UTF-8 text cannot carry", surrogate.start())
        return None

    def check(self, value: str) -> str:
        """`value` unchanged, or a pydantic error of the refusal's type."""
        refused = self.refusal(value)
        if refused is not None:
            raise PydanticCustomError(refused.type, refused.message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Check after the string's own validation (type, length)."""
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The string's schema plus the pattern (in an ``allOf`` if the field has a pattern of its own)."""
        document = handler(schema)
        if "pattern" in document and document["pattern"] != self.pattern:  # e.g. an e-mail address: both apply
            document.setdefault("allOf", []).append({"pattern": self.pattern})
        else:
            document["pattern"] = self.pattern
        return document


_SURROGATE = re.compile("[\ud800-\udfff]")
_COMPILED: dict[CharacterPolicy, re.Pattern[str]] = {}


def _compiled(policy: CharacterPolicy) -> re.Pattern[str]:
    if policy not in _COMPILED:
        _COMPILED[policy] = re.compile(policy.character_class)
    return _COMPILED[policy]


SINGLE_LINE = CharacterPolicy("single line")
MULTI_LINE = CharacterPolicy("multi line", allowed=_FREE_TEXT_CONTROLS)

TEXT_ERROR_TYPES = frozenset({kind for _, _, kind, _ in _RANGES} | {"lone_surrogate"})
"""The pydantic error types the policies raise."""

TOLERATED_PATTERNS = frozenset({SINGLE_LINE.pattern, MULTI_LINE.pattern})
"""Patterns the compatibility gate lets a new version add to a string (see the module docstring)."""


def scrub(value: str, policy: CharacterPolicy = MULTI_LINE) -> str:
    """
    `value` with every character `policy` refuses replaced by U+FFFD.

    For text the bus derives from untrusted input and must record anyway (a
    dead letter's header): the fact is kept, its text made safe, rather than
    the record lost.
    """
    return _SURROGATE.sub("\ufffd", _compiled(policy).sub("\ufffd", value))

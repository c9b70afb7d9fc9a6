"""
RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

The audit log hashes its leaves, so two processes that mean the same fact must
produce the same bytes, on any machine and in any language a verifier is
written in.  RFC 8785 fixes every choice `json.dumps` leaves open:

- **Object members are sorted by the UTF-16 code units of their names**
  (RFC 8785 §3.2.3), not by code points: ``"\\U0001f600"`` (UTF-16
  ``d83d de00``) sorts *before* ``"\\ufb33"``.  Python's ``sort_keys`` sorts
  by code point and gets this wrong for names outside the Basic Multilingual
  Plane, so the keys are sorted on their UTF-16-BE encoding, whose byte order
  is the code-unit order.
- **Numbers are IEEE-754 doubles written the way ECMAScript's
  ``Number.prototype.toString`` writes them** (§3.2.2.3): the shortest digits
  that round-trip (Python's ``repr`` finds the same digits), laid out as an
  integer up to 21 digits, as a plain decimal down to 1e-6, and otherwise in
  exponent form with an explicit sign (``1e+21``, ``1e-7``, ``-0`` is ``0``).
  ``repr`` alone differs (``1e-07``, ``1.0``, ``1e+16`` vs ``10000000000000000``).
- **Integers** are numbers too, so an ``int`` is accepted only when its decimal
  text is exactly the canonical text of its nearest double.  That holds for every
  ``abs(n) <= 2**53``, and for the large integers ``json.loads`` returns when
  it reads a canonical double back (``58676641057596660``), so re-canonicalising
  what we wrote never fails.  Anything else is refused: ``2**53 + 1`` and
  ``2**60`` would come out as a different number (``...992``, ``...847000``),
  so counts that large belong in strings.
- **Strings** are UTF-8 with only the escapes of §3.2.2.2: ``\\"``, ``\\\\``,
  ``\\b \\f \\n \\r \\t`` and ``\\u00xx`` (lower-case hex) for the other
  controls; everything else, including U+007F and U+2028, is written as is.
  A lone surrogate cannot be encoded and is refused.
- **No whitespace** anywhere.

Anything outside the JSON data model (NaN, infinities, bytes, sets, dates,
non-string object names, other types) raises `ValueError` naming the path to
the offending value, rather than being coerced: a silently coerced value would
hash differently in a verifier that read the JSON back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from json.encoder import encode_basestring as _encode_string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["MAX_DEPTH", "canonical_json", "canonical_model"]

_EXACT_INTEGERS = 2**53
"""Every int up to this magnitude is exactly one double and prints the same either way."""

MAX_DEPTH = 200
"""Nesting limit: far above any audit fact, far below Python's recursion limit (a clear error, not RecursionError)."""


def canonical_json(value: object) -> bytes:
    """
    Serialise `value` as RFC 8785 canonical JSON, UTF-8 encoded.

    `value` is made of ``dict`` (or any `Mapping`) with ``str`` keys, ``list``
    or ``tuple``, ``str``, ``int`` (see the module docstring for large ones),
    finite ``float``, ``bool`` and ``None``.  Raises `ValueError` for anything
    else, saying where it is (``$.facts[2].at: datetime is not a JSON value``).
    """
    parts: list[str] = []
    try:
        _emit(value, parts, 0)
    except _Refused as exc:
        raise ValueError("$" + "".join(reversed(exc.where)) + ": " + exc.reason) from None
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # only lone surrogates get here
        raise ValueError(f"string contains a lone surrogate (U+{ord(text[exc.start]):04X}); "
                         "RFC 8785 strings must be valid Unicode") from exc


def canonical_model(model: BaseModel) -> bytes:
    """
    A pydantic model's JSON form as canonical bytes: what every audit fact and directory record is written as.

    ``model_dump_json`` keeps field order and pydantic's own number and string
    rules, so two writers of the same fact could publish different bytes; going
    through the JSON data model and `canonical_json` gives every writer, and any
    verifier that re-canonicalises what it read, the one byte string.
    """
    return canonical_json(model.model_dump(mode="json"))


class _Refused(Exception):
    """
    A value outside the JSON data model, raised deep in the walk.

    The containers it passes through on the way out add their member name or
    index to `where`, so the path is only built when something is wrong, not
    for every value on the hot path.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []


def _emit(value: object, parts: list[str], depth: int) -> None:
    """Append the canonical text of `value` to `parts`."""
    if isinstance(value, str):
        parts.append(_string(value))
    # bool before int: True is an int in Python but `true` in JSON.
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(_integer(int(value)))  # int(): an IntEnum's str() is its name
    elif isinstance(value, float):
        parts.append(_number(value))
    elif isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            _emit_object(value, parts, depth + 1)
        else:
            _emit_array(value, parts, depth + 1)
    else:
        raise _Refused(f"{type(value).__name__} is not a JSON value")


def _emit_array(value: list[object] | tuple[object, ...], parts: list[str], depth: int) -> None:
    parts.append("[")
    for index, item in enumerate(value):
        if index:
            parts.append(",")
        try:
            _emit(item, parts, depth)
        except _Refused as exc:
            exc.where.append(f"[{index}]")
            raise
    parts.append("]")


def _emit_object(value: Mapping[object, object], parts: list[str], depth: int) -> None:
    """Members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3)."""
    items: list[tuple[str, object]] = []
    for key, member in value.items():
        if not isinstance(key, str):
            raise _Refused(f"object name {key!r} is a {type(key).__name__}, not a string")
        items.append((key, member))
    if all(key.isascii() for key, _ in items):
        items.sort(key=_name)  # ASCII: code-point order is UTF-16 order, and cheaper to compare
    else:
        try:
            items.sort(key=_utf16_name)
        except UnicodeEncodeError:
            raise _Refused("an object name contains a lone surrogate") from None
    append = parts.append
    separator = "{"
    for name, member in items:
        append(separator + _string(name) + ":")
        separator = ","
        if type(member) is str:  # the common case, without a call through _emit
            append(_string(member))
            continue
        try:
            _emit(member, parts, depth)
        except _Refused as exc:
            exc.where.append(f".{name}")
            raise
    append("}" if items else "{}")


def _name(item: tuple[str, object]) -> str:
    return item[0]


def _utf16_name(item: tuple[str, object]) -> bytes:
    """Sort key: UTF-16-BE bytes compare like the sequence of UTF-16 code units."""
    return item[0].encode("utf-16-be")


def _string(text: str) -> str:
    """
    A JSON string with exactly the RFC 8785 §3.2.2.2 escapes.

    The standard library's C string encoder (what ``json.dumps(...,
    ensure_ascii=False)`` uses) escapes exactly these: ``"``, ``\\``, the five
    short forms and ``\\u00xx`` in lower case for other controls; it reads a
    str subclass's characters, not its ``__str__``.  tests/unit/core/test_jcs.py
    pins this, so a change in Python would fail there, not in the log.
    """
    return _encode_string(text)


def _integer(value: int) -> str:
    """An int whose decimal text is the canonical text of its nearest double (see the module docstring)."""
    text = str(value)
    if abs(value) <= _EXACT_INTEGERS:
        return text
    try:
        as_double = _number(float(value))
    except OverflowError:
        as_double = None
    if as_double != text:
        raise _Refused(f"integer {value} would be written as a different number ({as_double}); "
                       "RFC 8785 numbers are IEEE-754 doubles, so send it as a string")
    return text


def _number(value: float) -> str:
    """
    ECMAScript Number::toString (ECMA-262 §7.1.12.1, required by RFC 8785 §3.2.2.3).

    With the shortest round-tripping digits ``s`` (k of them) and the decimal
    exponent ``n`` such that the value is ``0.s * 10**n``, the layout is:
    ``k ≤ n ≤ 21`` an integer (digits then zeros); ``0 < n ≤ 21`` digits with
    a point inside; ``-6 < n ≤ 0`` ``0.`` then zeros then digits; otherwise
    ``d[.ddd]e±(n-1)``.
    """
    if not math.isfinite(value):
        raise _Refused(f"{value!r} is not a JSON number (RFC 8785 allows finite doubles only)")
    if value == 0:
        return "0"  # covers -0.0 too
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    n = len(whole) + int(exponent or 0) - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exp = f"e+{e}" if e >= 0 else f"e-{-e}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + exp

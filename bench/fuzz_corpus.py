"""
Hostile records: a fixed corpus of shapes and hypothesis strategies, for every worker's input.

Shared by the unit tests (each worker's record handler, in process), the
real-broker test (``tests/integration/test_hostile_records.py``) and the
benchmark (``bench/fuzz.py``), so all three try the same attacks.  Nothing here
knows a worker: every generator starts from a *template* (one valid record of
the worker's input, as bytes and headers) and breaks it.

The shapes, each named by its ``kind`` (what a failure message reports):

- ``deep-*``: nesting far beyond any limit (400 KB of ``[``, objects, mixed),
  and exactly at and one past `safebus.limits.MAX_JSON_DEPTH`;
- ``huge-*`` and ``tiny-*``: values from 1,000,000 bytes up to just under the
  broker's limit, one byte either side of `MAX_RECORD_BYTES`, and the empty,
  one-byte and ``null`` records;
- ``utf8-*`` and ``unicode-*``: invalid UTF-8 (stray bytes, overlong forms,
  encoded surrogates, cut sequences), lone surrogate escapes, BOM, NUL, bidi
  overrides, zero-width and combining runs, noncharacters;
- ``wrong-type``: every field of the template's JSON (and of its nested
  objects) replaced by every kind of wrong value;
- ``sealed-wrong-type`` and ``signed-wrong-type``: the same inside a validly
  sealed payload, or validly signed audit fact, when the caller can seal or
  sign (an insider's bug rather than an outsider's noise);
- ``truncated``, ``bitflip``, ``binary``: cut, flipped and random bytes;
- headers (`mangled_headers`): every header missing, empty, not a number,
  negative, huge, not UTF-8, and unknown extras.

Deterministic generators take a `random.Random`, so a seed reproduces a run;
the hypothesis strategies draw from the same shapes.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from hypothesis import strategies as st

from safebus.limits import BROKER_MESSAGE_MAX_BYTES, MAX_JSON_DEPTH, MAX_RECORD_BYTES

__all__ = [
    "HUGE_MAX_BYTES", "WRONG_VALUES", "Hostile", "Resigner", "Sealer", "corpus", "hostile_records", "hostile_value",
    "json_values", "mangled_headers", "random_hostile", "strategy",
]

HUGE_MAX_BYTES = BROKER_MESSAGE_MAX_BYTES - 8192
"""The largest value a plain client can put on a topic here (the broker's limit less framing and headers)."""

WRONG_VALUES: tuple[object, ...] = (
    None, True, False, 0, -1, 2**64, -(2**63) - 1, 1.5, 1e308, -0.0, "", "x" * 20_000, "\u202e\u0000\r\n",
    "\ud83d\ude00" * 3, [], {}, [[[[]]]], {"a": {"b": None}}, ["a", 1, None], "1970-01-01T00:00:00", "NaN",
)
"""A value of every JSON type, and edge values of each, to put where a field expects something else."""

_NUMERIC_TEXT: tuple[bytes, ...] = (
    b"", b"abc", b"-1", b"1e3", b"99999999999999999999999", b"\xff\xfe", b"0x10", b" 1", "\u0663".encode(),
    b"1.5", b"\x00", b"9" * 5000,
)
"""Header values for headers that should hold a number (Arabic-Indic three is a digit to ``int()``)."""


@dataclass(frozen=True, kw_only=True)
class Hostile:
    """One hostile record: its value, key and headers, and the kind of attack it is."""

    kind: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)


Sealer = Callable[[bytes], bytes]
"""Seals a plaintext as a valid envelope for the worker's input topic (an insider's sealed nonsense)."""
Resigner = Callable[[bytes], Mapping[str, bytes]]
"""The headers that validly sign a value for the worker's input topic (an audit fact's signature)."""


def _deep(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    yield "deep-array", b"[" * 400_000
    yield "deep-object", b'{"a":' * 80_000
    yield "deep-mixed", b'[{"a":' * 40_000
    yield "deep-closed", b"[" * 50_000 + b"]" * 50_000
    yield "deep-at-limit", b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    yield "deep-over-limit", b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    yield "deep-in-string", json.dumps("[" * 100_000).encode()
    depth = rng.randint(MAX_JSON_DEPTH + 1, 5000)
    yield "deep-random", b'{"header":' + b"[" * depth + b"]" * depth + b"}"


def _huge(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    yield "huge-1000000", b"\x00" * 1_000_000
    yield "huge-1048576", b"[" * 1_048_576 if HUGE_MAX_BYTES >= 1_048_576 else b"[" * HUGE_MAX_BYTES
    yield "huge-max", rng.randbytes(HUGE_MAX_BYTES)
    yield "huge-json-string", json.dumps({"header": "x" * (1_020_000)}).encode()
    yield "huge-over-record-limit", json.dumps({"p": "y" * (MAX_RECORD_BYTES - 8 + 1)}).encode()
    yield "huge-at-record-limit", json.dumps({"p": "y" * (MAX_RECORD_BYTES - 8)}).encode()


def _tiny() -> Iterator[tuple[str, bytes]]:
    for i, value in enumerate((b"", b" ", b"{", b"}", b"[", b"null", b"0", b"[]", b"{}", b'""', b"\x00", b"\n",
                               b"true", b"-", b"1e999999", b'{"":""}')):
        yield f"tiny-{i}", value


def _utf8() -> Iterator[tuple[str, bytes]]:
    yield "utf8-stray", b'{"a":"\xff"}'
    yield "utf8-overlong", b'{"a":"\xc0\xaf"}'
    yield "utf8-surrogate-encoded", b'{"a":"\xed\xa0\x80"}'
    yield "utf8-cut", b'{"a":"\xe2\x82"}'
    yield "utf8-latin1", '{"a":"café"}'.encode("latin-1")
    yield "utf8-utf16", '{"a":"b"}'.encode("utf-16")
    yield "unicode-lone-surrogate", b'{"a":"\\ud800"}'
    yield "unicode-reversed-pair", b'{"a":"\\ude00\\ud83d"}'
    yield "unicode-bom", b'\xef\xbb\xbf{"a":1}'
    yield "unicode-nul", b'{"a\\u0000":"\\u0000"}'
    yield "unicode-bidi", json.dumps({"header": "\u202e\u2066\u2069", "\u202e": 1}, ensure_ascii=False).encode()
    yield "unicode-zero-width", json.dumps({"a": "\u200b" * 10_000}, ensure_ascii=False).encode()
    yield "unicode-combining", json.dumps({"a": "e" + "\u0301" * 20_000}, ensure_ascii=False).encode()
    yield "unicode-noncharacters", json.dumps({"a": "\ufffe\uffff\U0010ffff"}, ensure_ascii=False).encode()
    yield "unicode-escaped-everything", json.dumps({"a": "".join(chr(c) for c in range(0x20, 0x3000, 7))}).encode()


def _fields(template: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every object key path in `template` (objects inside objects only: lists are data)."""
    if isinstance(template, dict):
        for name, child in template.items():
            yield (*path, name)
            yield from _fields(child, (*path, name))


def _replaced(template: dict[str, object], path: tuple[str, ...], value: object) -> dict[str, object]:
    copy: dict[str, object] = json.loads(json.dumps(template))
    target: dict[str, object] = copy
    for name in path[:-1]:
        nested = target[name]
        assert isinstance(nested, dict)
        target = nested
    target[path[-1]] = value
    return copy


def _wrong_types(template: bytes, kind: str, wrap: Callable[[bytes], bytes]) -> Iterator[tuple[str, bytes]]:
    try:
        parsed = json.loads(template)
    except ValueError:
        return
    if not isinstance(parsed, dict):
        return
    for path in _fields(parsed):
        for value in WRONG_VALUES:
            yield kind, wrap(json.dumps(_replaced(parsed, path, value)).encode())
        without = _replaced(parsed, path, None)
        _drop(without, path)
        yield f"{kind}-missing", wrap(json.dumps(without).encode())
    yield f"{kind}-extra", wrap(json.dumps({**parsed, "unexpected": "field"}).encode())
    yield f"{kind}-array", wrap(json.dumps([parsed]).encode())


def _drop(value: dict[str, object], path: tuple[str, ...]) -> None:
    for name in path[:-1]:
        nested = value[name]
        assert isinstance(nested, dict)
        value = nested
    value.pop(path[-1], None)


def corpus(template: bytes, *, rng: random.Random, sealer: Sealer | None = None,
           plaintext: bytes | None = None) -> Iterator[tuple[str, bytes]]:
    """
    The fixed corpus against one input: every shape above, as (kind, value).

    `template` is a valid record value for the worker; with a `sealer` and the
    template's `plaintext`, the wrong-typed payloads are also sealed validly.
    """
    yield from _deep(rng)
    yield from _huge(rng)
    yield from _tiny()
    yield from _utf8()
    yield from _wrong_types(template, "wrong-type", lambda value: value)
    if sealer is not None and plaintext is not None:
        yield from _wrong_types(plaintext, "sealed-wrong-type", sealer)
        yield "sealed-deep", sealer(b"[" * 400_000)
        yield "sealed-invalid-utf8", sealer(b'{"event_type":"\xff"}')
        yield "sealed-empty", sealer(b"")
    for cut in sorted({1, len(template) // 2, len(template) - 1, *rng.sample(range(1, max(2, len(template))), 3)}):
        yield "truncated", template[:cut]
    for _ in range(4):
        yield "bitflip", _bitflip(rng, template)
    yield "binary", rng.randbytes(rng.randint(1, 4096))


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _fresh_ids(value: bytes, rng: random.Random) -> bytes:
    """`value` with every UUID in it replaced by a new one (the same new one for the same old one)."""
    fresh: dict[bytes, bytes] = {}
    return _UUID.sub(lambda m: fresh.setdefault(m.group(0), str(uuid.UUID(int=rng.getrandbits(128),
                                                                          version=4)).encode()), value)


def _bitflip(rng: random.Random, template: bytes) -> bytes:
    flipped = bytearray(template)
    for _ in range(rng.randint(1, 8)):
        if flipped:
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def mangled_headers(base: Mapping[str, bytes], *, numeric: frozenset[str] = frozenset()) -> Iterator[
        tuple[str, dict[str, bytes]]]:
    """
    Every header of `base` missing, and replaced by each hostile value; plus unknown extras.

    Headers named in `numeric` (a partition, an offset) get the number-like
    attacks too.
    """
    for name in base:
        yield f"header-missing:{name}", {k: v for k, v in base.items() if k != name}
        values = (*(_NUMERIC_TEXT if name in numeric else ()), b"", b"\xff\xfe\xfd", b"x" * 10_000,
                  "\u202e".encode())
        for value in values:
            yield f"header-mangled:{name}", {**base, name: value}
    yield "header-none", {}
    yield "header-extra", {**base, "\u202e": b"\xff", "": b"", "x" * 300: b"y"}


def hostile_value(rng: random.Random, template: bytes, *, huge_share: float = 0.01) -> tuple[str, bytes]:
    """One random hostile value (for long runs): mostly mutations of `template`, sometimes huge or deep."""
    roll = rng.random()
    if roll < huge_share:
        return "huge-random", rng.randbytes(rng.randint(1_000_000, HUGE_MAX_BYTES))
    if roll < 0.05:
        depth = rng.randint(MAX_JSON_DEPTH + 1, 200_000)
        return "deep-random", rng.choice((b"[", b'{"a":', b"[{")) * depth
    if roll < 0.15:
        return "truncated", template[:rng.randrange(max(1, len(template)))]
    if roll < 0.35:
        return "bitflip", _bitflip(rng, template)
    if roll < 0.45:
        return "binary", rng.randbytes(rng.randint(0, 2048))
    if roll < 0.55:
        kind, value = rng.choice(_SMALL_SHAPES)
        return kind, value
    try:
        parsed = json.loads(template)
    except ValueError:
        return "binary", rng.randbytes(64)
    paths = list(_fields(parsed)) if isinstance(parsed, dict) else []
    if not paths:
        return "binary", rng.randbytes(64)
    assert isinstance(parsed, dict)
    return "wrong-type", json.dumps(_replaced(parsed, rng.choice(paths), rng.choice(WRONG_VALUES))).encode()


_SMALL_SHAPES: tuple[tuple[str, bytes], ...] = (*_tiny(), *_utf8())


def random_hostile(rng: random.Random, template: bytes, base_headers: Mapping[str, bytes], *,
                   numeric: frozenset[str] = frozenset(), huge_share: float = 0.01) -> Hostile:
    """A random hostile record: a hostile value, and a third of the time mangled headers as well."""
    kind, value = hostile_value(rng, template, huge_share=huge_share)
    headers = dict(base_headers)
    if rng.random() < 0.33 and base_headers:
        name = rng.choice(sorted(base_headers))
        choices = (*(_NUMERIC_TEXT if name in numeric else ()), b"", b"\xff", b"z" * 1000)
        headers[name] = rng.choice(choices)
        kind = f"{kind}+header:{name}"
    key = rng.choice((None, b"", rng.randbytes(rng.randint(1, 600))))
    return Hostile(kind=kind, value=value, key=key, headers=headers)


def hostile_records(template: bytes, base_headers: Mapping[str, bytes], *, rng: random.Random,
                    numeric: frozenset[str] = frozenset(), sealer: Sealer | None = None,
                    plaintext: bytes | None = None, resign: Resigner | None = None) -> Iterator[Hostile]:
    """
    The whole fixed corpus for one input: every value shape with good headers, then every header mangled.

    With `resign` (an input whose records are signed in headers, as audit facts
    are), the wrong-typed values are also validly signed.
    """
    for kind, value in corpus(template, rng=rng, sealer=sealer, plaintext=plaintext):
        yield Hostile(kind=kind, value=value, key=b"k", headers=dict(base_headers))
    if resign is not None:  # fresh ids, so each variant is new to the worker (not a repeat it already holds)
        for kind, value in _wrong_types(template, "signed-wrong-type", lambda v: _fresh_ids(v, rng)):
            yield Hostile(kind=kind, value=value, key=b"k", headers={**base_headers, **resign(value)})
    for kind, headers in mangled_headers(base_headers, numeric=numeric):
        yield Hostile(kind=kind, value=template, key=b"k", headers=headers)


# --------------------------------------------------------------------------- hypothesis

def json_values(*, max_leaves: int = 30) -> st.SearchStrategy[object]:
    """Any JSON value, with unicode edge cases in strings and keys."""
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
        ["", "\u202e", "\u0000", "\ufeff", "\U0010ffff", "x" * 1000])
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
    return st.recursive(scalars, lambda children: st.lists(children, max_size=5) | st.dictionaries(
        text, children, max_size=5), max_leaves=max_leaves)


def strategy(template: bytes, base_headers: Mapping[str, bytes], *,
             numeric: frozenset[str] = frozenset()) -> st.SearchStrategy[Hostile]:
    """Hostile records for one input: fuzzed JSON, fuzzed bytes, template mutations, mangled headers."""
    values = st.one_of(
        json_values().map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        st.binary(max_size=4096),
        st.sampled_from([value for _, value in (*_tiny(), *_utf8())]),
        st.randoms(use_true_random=False).map(lambda r: hostile_value(r, template, huge_share=0.0)[1]),
    )
    header_values = st.binary(max_size=64) | st.sampled_from(_NUMERIC_TEXT)
    headers = st.fixed_dictionaries({}, optional={name: header_values | st.just(value)
                                                  for name, value in base_headers.items()})
    return st.builds(lambda v, h, k: Hostile(kind="hypothesis", value=v, key=k, headers=h),
                     values, headers, st.none() | st.binary(max_size=600))

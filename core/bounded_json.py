"""
JSON from untrusted bytes, within the bus's limits, failing with a reason code.

Why not ``json.loads``: the standard library's parser recurses once per
nesting level, so ``[`` repeated 400,000 times raises `RecursionError` (not a
`ValueError`), which escaped every worker's error handling on the old main.
This module parses with pydantic-core's Rust parser (jiter, already a
dependency through pydantic), which has its own fixed recursion limit and
rejects invalid UTF-8 and lone surrogates itself; it then checks our own,
lower nesting limit (`safebus.limits.MAX_JSON_DEPTH`) without recursion.

Every failure is a `JsonRefused` with a short ``reason`` that is safe for a
dead-letter header (it never quotes the input):

- ``too-large``: more bytes than allowed, refused before parsing;
- ``invalid-utf8``: not UTF-8 (or a lone surrogate escape);
- ``too-deep``: nested deeper than allowed;
- ``malformed``: not JSON (NaN and Infinity are not JSON either);
- ``wrong-type``: JSON, but not the type the caller needs (an object).
"""

from __future__ import annotations

from typing import cast

import pydantic_core

from safebus.errors import SafebusError
from safebus.limits import MAX_JSON_DEPTH, MAX_RECORD_BYTES

__all__ = ["JsonRefused", "depth_of", "loads", "loads_object"]


class JsonRefused(SafebusError, ValueError):
    """
    Bytes that are not acceptable JSON; `reason` says why in a code, never in the input's words.

    A `ValueError` too, so callers that already refuse a ``ValueError`` from
    ``json.loads`` keep doing so.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused JSON: {reason}")
        self.reason = reason


def loads(raw: bytes | str, *, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The JSON value in `raw`; raises `JsonRefused` (never RecursionError, never UnicodeError)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise JsonRefused("too-large")
    try:
        value = pydantic_core.from_json(data, allow_inf_nan=False, cache_strings=False)
    except ValueError as exc:
        message = str(exc)
        if "recursion limit" in message:
            raise JsonRefused("too-deep") from None
        if "unicode" in message or "utf-8" in message.lower() or "surrogate" in message or "hex escape" in message:
            raise JsonRefused("invalid-utf8") from None
        raise JsonRefused("malformed") from None
    if depth_of(value, limit=max_depth) > max_depth:
        raise JsonRefused("too-deep")
    return value


def loads_object(raw: bytes | str, *, max_bytes: int = MAX_RECORD_BYTES,
                 max_depth: int = MAX_JSON_DEPTH) -> dict[str, object]:
    """The JSON object in `raw`; `JsonRefused` (``wrong-type``) for any other JSON value."""
    value = loads(raw, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(value, dict):
        raise JsonRefused("wrong-type")
    return cast(dict[str, object], value)


def depth_of(value: object, *, limit: int = MAX_JSON_DEPTH) -> int:
    """
    Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), counted without recursion.

    Stops early once `limit` is exceeded, returning ``limit + 1``.
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] | None = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            children = None
        if children is None:
            continue
        depth += 1
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest

"""
Compatibility gate for the bus's data contracts (JSON Schema 2020-12, as emitted by pydantic).

Why: producers and consumers upgrade independently, and an event written today may be read
years from now (the audit topic keeps everything).  Each new version of a contract is checked
against every earlier released version, so that a change which would strand old data or old
readers fails review instead of filling a consumer's dead-letter queue.

The modes follow the Avro-style meaning used by Confluent Schema Registry (BACKWARD, FORWARD,
FULL; `check_transitive` gives the *_TRANSITIVE variants), adapted to closed JSON content
models: our models use ``extra="forbid"``, so every object has ``"additionalProperties": false``.

- BACKWARD: a reader using `new` can read every document valid under `old` (new accepts ⊇ old).
- FORWARD: a reader using `old` can read every document written under `new`, as a *tolerant
  reader*: it ignores object properties its schema does not declare, so adding a property,
  optional or required, is forward-compatible; anything else new allows, old must accept.
- FULL: both.

Keyword by keyword:

- properties: removing one is a backward break (new's ``additionalProperties: false`` rejects
  old data that carries it), and also a forward break if old required it.  Adding one is fine
  both ways if optional, a backward break if required.  Optional -> required breaks backward;
  required -> optional breaks forward.  Opening ``additionalProperties`` is backward-compatible
  and breaks forward only if old gave undeclared properties a schema of their own.
- type, enum, const (a one-value enum) and the bounds min/maxLength, min/maxItems,
  min/maxProperties, minimum/maximum and their exclusive forms: narrowing in new breaks
  backward, widening breaks forward.  ``integer`` is a subset of ``number``.
- pattern, format, uniqueItems: not compared semantically, so one added or changed in new
  breaks backward, one removed or changed breaks forward.  The one exception is a pattern the
  caller declares tolerated (`check(..., tolerated_patterns=...)`): adding it where old had no
  pattern is accepted.  The bus tolerates only its character rule for text (no control or
  bidi character, `safebus.schemas.text`), which no genuine record ever broke.
- items and prefixItems are compared recursively.  A local ``$ref`` resolves against the root of
  its own document; an (old ref, new ref) pair met again inside itself is assumed compatible,
  which is what makes recursive schemas terminate.
- anyOf/oneOf (pydantic's ``X | None``): backward, every old branch must be accepted by some
  new branch; forward, every new branch by some old branch.  A schema that is not a union is a
  single branch.  oneOf's exclusivity is not checked.
- Annotations (title, description, default, examples, ..., and OpenAPI's discriminator) are
  ignored.  Any other keyword that differs, including a ``$ref`` outside the document, is
  reported as a break in both directions.

Paths are data paths: ``$`` is the document, ``.name`` a property (``["odd name"]`` if not an
identifier), ``[]`` any array item, ``[0]`` a tuple position, ``.*`` an undeclared property.
``$ref`` and unions add no segment, as they do not move through the data: a changed type of a
child's date of birth is reported at ``$.children[].date_of_birth``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import unquote

__all__ = ["Break", "Direction", "Mode", "check", "check_transitive"]

Direction = Literal["backward", "forward"]


class Mode(StrEnum):
    """Which readers must keep working, in Confluent Schema Registry's terms."""

    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


@dataclass(frozen=True)
class Break:
    """One incompatibility: where in the data, which direction it breaks, and why."""

    path: str
    direction: Direction
    message: str


def check(old: Mapping[str, Any], new: Mapping[str, Any], mode: Mode, *,
          tolerated_patterns: frozenset[str] = frozenset()) -> list[Break]:
    """
    The breaks between released schema `old` and candidate `new` that `mode` forbids; empty if compatible.

    A pattern in `tolerated_patterns` that new adds to a string old left without one is no break.
    """
    wanted = {"backward", "forward"} if Mode(mode) is Mode.FULL else {Mode(mode).value}
    found = _Comparison(old, new, tolerated_patterns).compare(old, new, "$")
    return [b for b in dict.fromkeys(found) if b.direction in wanted]


def check_transitive(
    history: Sequence[Mapping[str, Any]], new: Mapping[str, Any], mode: Mode, *,
    tolerated_patterns: frozenset[str] = frozenset(),
) -> list[tuple[int, Break]]:
    """`check` against every released version; each break comes with the index of its version in `history`."""
    return [(i, b) for i, old in enumerate(history)
            for b in check(old, new, mode, tolerated_patterns=tolerated_patterns)]


_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$comment", "$id", "$schema", "deprecated", "readOnly",
    "writeOnly", "$defs", "discriminator",  # $defs is reached through $ref; discriminator is an OpenAPI hint
})
_BOUNDS = (  # (family, keyword, its exclusive form, is an upper bound)
    ("string", "minLength", None, False), ("string", "maxLength", None, True),
    ("number", "minimum", "exclusiveMinimum", False), ("number", "maximum", "exclusiveMaximum", True),
    ("array", "minItems", None, False), ("array", "maxItems", None, True),
    ("object", "minProperties", None, False), ("object", "maxProperties", None, True),
)
_HANDLED = frozenset({
    "type", "enum", "const", "pattern", "format", "items", "prefixItems", "uniqueItems", "properties", "required",
    "additionalProperties", *(k for _, key, exclusive, _ in _BOUNDS for k in (key, exclusive) if k),
})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Comparison:
    """One old/new pair of documents; `$ref`s resolve against the root of the side they appear on."""

    def __init__(self, old_root: Mapping[str, Any], new_root: Mapping[str, Any],
                 tolerated_patterns: frozenset[str] = frozenset()) -> None:
        self._old, self._new = old_root, new_root
        self._tolerated = tolerated_patterns
        self._active: set[tuple[str, str]] = set()

    def compare(self, old: Any, new: Any, path: str) -> list[Break]:
        """All breaks, in both directions, between an old and a new (sub)schema."""
        (old, old_ref), (new, new_ref) = _resolve(old, self._old), _resolve(new, self._new)
        if old_ref is None or new_ref is None:  # an inline side is finite, so recursion ends by itself
            return self._compare(old, new, path)
        pair = (old_ref, new_ref)
        if pair in self._active:  # recursion: the comparison already under way reports any break
            return []
        self._active.add(pair)
        try:
            return self._compare(old, new, path)
        finally:
            self._active.discard(pair)

    def _compare(self, old: Any, new: Any, path: str) -> list[Break]:
        if old == {} and new == {}:  # both accept anything (e.g. no `items`): nothing to compare or recurse into
            return []
        if old is False or new is False:  # `false` accepts nothing; `true` is `{}` by now
            return _pair(path, "new accepts no value here" if new is False and old is not False else None,
                         "old readers accept no value here" if old is False and new is not False else None)
        olds, news = _branches(old), _branches(new)
        if olds is None and news is None:
            return self._plain(old, new, path)
        olds, news = [old] if olds is None else olds, [new] if news is None else news
        return [*self._cover(olds, news, path, "backward"), *self._cover(news, olds, path, "forward")]

    def _cover(self, mine: list[Any], theirs: list[Any], path: str, direction: Direction) -> list[Break]:
        """Each branch of `mine` must be matched by a branch of `theirs` with no break in `direction`.

        Backward, `mine` are old's branches; forward, new's.  If nothing matches, report the breaks
        against the nearest branch of an overlapping type (they name the deepest path), else a summary.
        """
        mine_root, their_root = (self._old, self._new) if direction == "backward" else (self._new, self._old)
        breaks: list[Break] = []
        for branch in mine:
            nearest: list[Break] | None = None
            for other in theirs:
                old, new = (branch, other) if direction == "backward" else (other, branch)
                found = [b for b in self.compare(old, new, path) if b.direction == direction]
                if not found:
                    break
                if _overlaps(_types_of(branch, mine_root), _types_of(other, their_root)):
                    nearest = found if nearest is None or len(found) < len(nearest) else nearest
            else:
                allowed = " | ".join(_describe(other, their_root) for other in theirs) or "nothing"
                what = "new no longer accepts {}; new allows {}" if direction == "backward" else \
                    "old readers reject {}; old allows {}"
                breaks += nearest or [Break(path, direction, what.format(_describe(branch, mine_root), allowed))]
        return breaks

    def _plain(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Break]:
        told, tnew = _types(old), _types(new)
        change = f"type changed from {_show_types(told)} to {_show_types(tnew)}"
        breaks = _pair(
            path,
            None if _subset(told, tnew) else f"{change}; new rejects values old accepted",
            None if _subset(tnew, told) else f"{change}; old readers reject values new allows",
        )
        if not _overlaps(told, tnew):
            return breaks  # nothing in common: the type break says it all
        breaks += _value_breaks(_values(old), _values(new), path)
        shared = {f for f in ("string", "number", "array", "object") if _admits(told, f) and _admits(tnew, f)}
        if "string" in shared:
            added_tolerated = "pattern" not in old and new.get("pattern") in self._tolerated
            breaks += [*([] if added_tolerated else _assertion_breaks("pattern", old, new, path)),
                       *_assertion_breaks("format", old, new, path)]
        for family, key, exclusive, upper in _BOUNDS:
            if family in shared:
                breaks += _bound_breaks(old, new, key, exclusive, upper, path)
        if "array" in shared:
            breaks += self._array(old, new, path)
        if "object" in shared:
            breaks += self._object(old, new, path)
        for key in sorted((old.keys() | new.keys()) - _HANDLED):
            if (key in old, _canon(old.get(key))) != (key in new, _canon(new.get(key))):
                message = f"unrecognised keyword {key!r} differs; assumed incompatible"
                breaks += _pair(path, message, message)
        return breaks

    def _array(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Break]:
        breaks = _assertion_breaks("uniqueItems", old, new, path)
        prefix_old, prefix_new = old.get("prefixItems", []), new.get("prefixItems", [])
        rest_old, rest_new = old.get("items", True), new.get("items", True)
        for i in range(max(len(prefix_old), len(prefix_new))):
            breaks += self.compare(prefix_old[i] if i < len(prefix_old) else rest_old,
                                   prefix_new[i] if i < len(prefix_new) else rest_new, f"{path}[{i}]")
        return breaks + self.compare(rest_old, rest_new, f"{path}[]")

    def _object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Break]:
        props_old: Mapping[str, Any] = old.get("properties", {})
        props_new: Mapping[str, Any] = new.get("properties", {})
        req_old, req_new = set(old.get("required", ())), set(new.get("required", ()))
        extra_old, extra_new = old.get("additionalProperties", True), new.get("additionalProperties", True)
        breaks: list[Break] = []
        for name in dict.fromkeys([*props_old, *props_new, *sorted(req_old | req_new)]):
            at = f"{path}.{name}" if _IDENTIFIER.match(name) else f"{path}[{json.dumps(name)}]"
            if name in req_new - req_old:
                what = "property became required" if name in props_old else "required property added"
                breaks.append(Break(at, "backward", f"{what}; documents valid under old may lack it"))
            if name in req_old - req_new:
                what = "property no longer required" if name in props_new else "required property removed"
                breaks.append(Break(at, "forward", f"{what}; old readers expect it"))
            if name in props_old and name in props_new:
                breaks += self.compare(props_old[name], props_new[name], at)
            elif name in props_old and extra_new is False:
                breaks.append(Break(at, "backward", "property removed; new rejects documents that still carry it"))
            elif name in props_old:  # new leaves it to additionalProperties
                breaks += self.compare(props_old[name], extra_new, at)
            elif name in props_new and extra_old is not False:  # old documents may carry it as an extra
                breaks += self.compare(extra_old, props_new[name], at)
        # Properties neither side declares: a tolerant old reader ignores them unless it gave them a schema.
        if extra_old is not False and extra_new is False:
            breaks.append(Break(f"{path}.*", "backward", "additionalProperties closed; new rejects undeclared "
                                "properties that old accepted"))
        elif extra_old is not False:
            breaks += self.compare(extra_old, extra_new, f"{path}.*")
        return breaks


def _pair(path: str, backward: str | None, forward: str | None) -> list[Break]:
    """A break in each direction that has a message."""
    messages: tuple[tuple[Direction, str | None], ...] = (("backward", backward), ("forward", forward))
    return [Break(path, direction, message) for direction, message in messages if message is not None]


def _resolve(schema: Any, root: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The schema behind local `$ref`s and one-element `allOf`s, without annotations; `true` becomes `{}`.

    Also returns the last `$ref` followed.  A `$ref` outside the document is kept and compared as text.
    """
    ref: str | None = None
    followed: set[str] = set()
    while True:
        if isinstance(schema, bool):
            return ({} if schema else False), ref
        if not isinstance(schema, Mapping):
            raise TypeError(f"not a JSON Schema: {schema!r}")
        rest = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
        target = rest.get("$ref")
        if isinstance(target, str) and target.startswith("#"):
            if target in followed:
                raise ValueError(f"$ref {target!r} refers to itself")
            followed.add(target)
            ref = target
            del rest["$ref"]
            schema = _merge(_pointer(root, target), rest)
        elif isinstance(rest.get("allOf"), list) and len(rest["allOf"]) == 1:
            schema = _merge(rest.pop("allOf")[0], rest)
        else:
            return rest, ref


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ValueError(f"unresolvable $ref {ref!r}") from exc
    return node


def _merge(base: Any, overlay: Any) -> Any:
    """Both subschemas at once, approximated by merging their keywords (overlay wins a clash)."""
    if base is False or overlay is False:
        return False
    if base is True or not base:
        return overlay
    return base if overlay is True or not overlay else {**base, **overlay}


def _branches(schema: Mapping[str, Any]) -> list[Any] | None:
    """The alternatives of an anyOf/oneOf, sibling keywords folded into each; None if not a union."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return [_merge(rest, branch) for branch in schema[key]]
    return None


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values allowed by enum and/or const; None if unrestricted."""
    values = list(schema["enum"]) if "enum" in schema else None
    if "const" in schema:
        const = schema["const"]
        values = [const] if values is None or _canon(const) in map(_canon, values) else []
    return values


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The JSON types a schema admits, narrowed by enum/const; None for any."""
    declared = schema.get("type")
    types = None if declared is None else frozenset([declared] if isinstance(declared, str) else declared)
    values = _values(schema)
    return types if values is None else frozenset(t for t in map(_json_type, values) if _subset({t}, types))


def _types_of(schema: Any, root: Mapping[str, Any]) -> frozenset[str] | None:
    resolved, _ = _resolve(schema, root)
    if resolved is False:
        return frozenset()
    return None if _branches(resolved) is not None else _types(resolved)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    kinds = {float: "number", str: "string", type(None): "null", list: "array", dict: "object"}
    return next(name for kind, name in kinds.items() if isinstance(value, kind))


def _subset(a: frozenset[str] | set[str] | None, b: frozenset[str] | None) -> bool:
    """Whether every type in `a` (None: any) is accepted by `b`; integer is a kind of number."""
    if b is None:
        return True
    return a is not None and all(t in b or (t == "integer" and "number" in b) for t in a)


def _admits(types: frozenset[str] | None, family: str) -> bool:
    """Whether values governed by a keyword family (string, number, array, object) get through `types`."""
    return types is None or family in types or (family == "number" and "integer" in types)


def _overlaps(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or any(_subset({t}, b) for t in a) or any(_subset({t}, a) for t in b)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _show(values: Sequence[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _show_types(types: frozenset[str] | None) -> str:
    return "any" if types is None else " | ".join(sorted(types)) or "nothing"


def _describe(schema: Any, root: Mapping[str, Any]) -> str:
    """A short name for a union branch in a message."""
    resolved, ref = _resolve(schema, root)
    if ref is not None:
        return ref.rsplit("/", 1)[-1]
    if resolved is False:
        return "nothing"
    if _branches(resolved) is not None:
        return "a union"
    if (values := _values(resolved)) is not None:
        return _show(values)
    text = _show_types(_types(resolved))
    return f"{text} (format {resolved['format']})" if "format" in resolved else text


def _value_breaks(old: list[Any] | None, new: list[Any] | None, path: str) -> list[Break]:
    """Breaks from enum/const: the allowed values (None: unrestricted) must not shrink (backward) or grow (forward)."""
    if old is None or new is None:
        return _pair(path, None if new is None else f"new restricts values to {_show(new)}",
                     None if old is None else f"values no longer restricted to {_show(old)}")
    lost = [v for v in old if _canon(v) not in map(_canon, new)]
    gained = [v for v in new if _canon(v) not in map(_canon, old)]
    return _pair(path, f"enum narrowed; new rejects {_show(lost)}" if lost else None,
                 f"enum widened; old readers reject {_show(gained)}" if gained else None)


def _assertion_breaks(key: str, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Break]:
    """A keyword we cannot reason inside (a regex, a format): any new one narrows, any lost one widens."""
    was, now = old.get(key) or None, new.get(key) or None  # uniqueItems: false is the same as absent
    if _canon(was) == _canon(now):
        return []
    change = f"{key} changed from {json.dumps(was)} to {json.dumps(now)}"
    return _pair(path, change if now is not None else None, change if was is not None else None)


def _bound_breaks(old: Mapping[str, Any], new: Mapping[str, Any], key: str, exclusive: str | None, upper: bool,
                  path: str) -> list[Break]:
    """A bound must not tighten (backward) or loosen (forward); with an exclusive form, the tighter counts."""

    def tightness(schema: Mapping[str, Any]) -> tuple[float, bool]:  # greater means fewer values allowed
        found = [(-schema[k] if upper else schema[k], k == exclusive) for k in (key, exclusive)
                 if k is not None and k in schema]
        return max(found, default=(-math.inf, False))

    def show(bound: tuple[float, bool]) -> str:
        limit = -bound[0] if upper else bound[0]
        return "unbounded" if bound[0] == -math.inf else f"{'<' if upper else '>'}{'' if bound[1] else '='} {limit}"

    was, now = tightness(old), tightness(new)
    change = f"{key} {'tightened' if now > was else 'loosened'} ({show(was)} -> {show(now)})"
    return _pair(path, change if now > was else None, change if now < was else None)

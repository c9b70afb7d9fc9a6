"""What a `safebus` module defines publicly, read from its source, and what its ``__all__`` declares.

`__all__` is a module's promise of what it offers; a name defined but left out is either private
(and should say so with an underscore) or forgotten, and a name listed but not defined is an
export that fails on ``from m import *``. Reading with `ast` means nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

__all__ = ["declared_all", "defined_public_names", "imported_names"]

_TYPE_PARAMETERS = {"TypeVar", "ParamSpec", "TypeVarTuple"}
"""Calls whose result is a type parameter: typing machinery for annotations, not something a module offers."""


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, looking into ``if``/``try`` blocks (a conditional definition is still top-level)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _statements(block)
        else:
            yield node


def _targets(target: ast.expr) -> Iterator[str]:
    """The plain names an assignment target binds (``a``, ``a, b``), not attributes or subscripts."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _targets(element)


def defined_public_names(path: Path) -> set[str]:
    """The public names ``path`` defines at top level: classes, functions and assigned names, no imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            if _is_type_parameter(node.value):
                continue
            for target in node.targets:
                names.update(_targets(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_targets(node.target))
    return {name for name in names if not name.startswith("_")}


def imported_names(path: Path) -> set[str]:
    """The names ``path`` binds by importing at top level (``import a.b`` binds ``a``), which it may re-export."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return names


def _is_type_parameter(value: ast.expr) -> bool:
    """``TypeVar("T")`` or ``typing.TypeVar("T")``."""
    if not isinstance(value, ast.Call):
        return False
    function = value.func
    if isinstance(function, ast.Attribute):
        return function.attr in _TYPE_PARAMETERS
    return isinstance(function, ast.Name) and function.id in _TYPE_PARAMETERS


def declared_all(path: Path) -> list[str] | None:
    """The literal ``__all__`` of ``path`` (a list or tuple of strings), or None when it declares none."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _statements(tree.body):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            assert isinstance(value, ast.List | ast.Tuple), f"{path}: __all__ is not a literal list"
            return [ast.literal_eval(element) for element in value.elts]
    return None

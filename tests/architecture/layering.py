"""Which `safebus` module may import which: the layering rule, checked from source.

The package's architecture (docs/architecture.md, ADR 0001) is a stack:

    schemas  <-  kernel  <-  stages (producers, processors, consumers, deploy)  <-  application

Each layer may import the layers to its left and never one to its right; a stage
never imports another stage (they meet on the bus, or in the application that
wires them). The checker reads every module's source with `ast` rather than
importing it, so it sees what a run might never reach: imports inside functions
(the lazy ones a composition root likes), under ``if TYPE_CHECKING:``, relative
imports, and ``importlib.import_module("safebus....")`` with a literal name.

Modules are found from pyproject's ``package-dir`` table, the same map setuptools
installs, so a folder added there (``app/`` -> ``safebus.app``) is checked without
editing this file.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STAGES = ("producers", "processors", "consumers", "deploy")
"""The second component of a stage module's name (`safebus.consumers.x`)."""


class Layer(IntEnum):
    """A layer; a module may import only layers of a value no greater than its own."""

    SCHEMAS = 0
    KERNEL = 1
    STAGE = 2
    APPLICATION = 3


@dataclass(frozen=True, order=True)
class Edge:
    """One module importing another (file-to-module, counted once however often it appears)."""

    source: str
    target: str


def package_dirs(pyproject: Path = REPO / "pyproject.toml") -> dict[str, Path]:
    """Package name -> folder, as setuptools maps them (the one `safebus` namespace)."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: pyproject.parent / folder for package, folder in mapping.items()}


def discover(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Every module under the mapped folders: dotted name -> source file.

    A folder mapped to a package of its own (``safebus.consumers`` -> consumers/)
    is walked only under that name, never again as a sub-folder of another root.
    """
    modules: dict[str, Path] = {}
    mapped = {folder.resolve() for folder in roots.values()}
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            if any((folder / part).resolve() in mapped for part in _prefixes(relative.parent)):
                continue
            if "build" in relative.parts or any(part.startswith(".") for part in relative.parts):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _prefixes(folder: Path) -> Iterable[Path]:
    """a/b/c -> a, a/b, a/b/c (an empty path yields nothing)."""
    parts = folder.parts
    for end in range(1, len(parts) + 1):
        yield Path(*parts[:end])


def layer_of(module: str) -> Layer:
    """The layer a `safebus` module belongs to, by where it lives: `safebus.app.*` is
    the application, `safebus.schemas.*` the schemas, a stage folder a stage, and any
    other `safebus.*` module (core/) the kernel."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "app":
        return Layer.APPLICATION
    if len(parts) > 1 and parts[1] == "schemas":
        return Layer.SCHEMAS
    if len(parts) > 1 and parts[1] in STAGES:
        return Layer.STAGE
    return Layer.KERNEL


def stage_of(module: str) -> str | None:
    """`consumers` for `safebus.consumers.audit.web`; None outside the stages."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def imports_of(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The `safebus` modules ``module`` imports anywhere in its file.

    ``from p import name`` counts as importing ``p.name`` when that is a module,
    else ``p`` itself; relative imports resolve against the module's package.
    """
    known_set = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_nearest(alias.name, known_set) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known_set else _nearest(base, known_set))
        elif isinstance(node, ast.Call) and _is_import_module(node):
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found.add(_nearest(argument.value, known_set))
    return {name for name in found if name.split(".")[0] == "safebus" and name != module}


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*base, *([node.module] if node.module else [])])


def _nearest(name: str, known: set[str]) -> str:
    """The longest known module that ``name`` is or lies in (``a.b.c`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return name


def _is_import_module(node: ast.Call) -> bool:
    function = node.func
    named = isinstance(function, ast.Attribute) and function.attr == "import_module"
    return (named or (isinstance(function, ast.Name) and function.id == "import_module")) and bool(node.args)


def edges(modules: Mapping[str, Path]) -> set[Edge]:
    """Every distinct module -> module import among ``modules``."""
    return {
        Edge(source, target) for source, path in modules.items() for target in imports_of(source, path, modules)
    }


def wrong_way(found: Iterable[Edge]) -> set[Edge]:
    """The edges the layering forbids: towards a higher layer, or from one stage into another."""
    bad: set[Edge] = set()
    for edge in found:
        source, target = layer_of(edge.source), layer_of(edge.target)
        crosses_stages = source is Layer.STAGE is target and stage_of(edge.source) != stage_of(edge.target)
        if target > source or crosses_stages:
            bad.add(edge)
    return bad

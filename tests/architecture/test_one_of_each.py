"""
One of each: the clock, base64, password hashing, the owner-only file write and canonical JSON each live in one module.

Near-copies drift: one clock went naive, one base64 decoder was lenient, one secret write kept an
old file's mode, one canonical JSON sorted keys by code point where RFC 8785 sorts by UTF-16.
Each concern now has a home (`safebus.clock`, `safebus.b64`, `safebus.passwords`,
`safebus.private_files`, `safebus.jcs`) and this test reads every module's source (with `ast`, so lazy code
counts too) to keep it so: a module outside the home that calls the underlying primitive fails,
naming the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.architecture.layering import discover, package_dirs


@dataclass(frozen=True)
class Primitive:
    """A call or import that only its home module may make."""

    name: str
    home: str
    matches: Callable[[ast.AST], bool]
    also_allowed: Mapping[str, str] | None = None
    """Other modules allowed to make it, with why (reviewed when they are added)."""


def _calls(owner: str, attribute: str) -> Callable[[ast.AST], bool]:
    """``owner.attribute(...)``, e.g. ``datetime.now(...)``."""
    def matches(node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute
                and isinstance(node.func.value, ast.Name) and node.func.value.id == owner)
    return matches


def _any_of(*tests: Callable[[ast.AST], bool]) -> Callable[[ast.AST], bool]:
    return lambda node: any(test(node) for test in tests)


def _imports(module: str) -> Callable[[ast.AST], bool]:
    """``import module`` or ``from module import ...``."""
    def matches(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(alias.name == module for alias in node.names)
        return isinstance(node, ast.ImportFrom) and node.module == module and not node.level
    return matches


def _creates_file_with_mode(node: ast.AST) -> bool:
    """``os.open(path, ... O_CREAT ..., mode)``: a hand-rolled private file."""
    return (_calls("os", "open")(node) and isinstance(node, ast.Call)
            and any(isinstance(n, ast.Attribute) and n.attr == "O_CREAT" for n in ast.walk(node)))


def _defines(function: str) -> Callable[[ast.AST], bool]:
    return lambda node: isinstance(node, ast.FunctionDef) and node.name == function


def _sorted_dumps(node: ast.AST) -> bool:
    """``json.dumps(..., sort_keys=True)``: a home-made canonical form (code-point order, pydantic-free numbers)."""
    return (_calls("json", "dumps")(node) and isinstance(node, ast.Call)
            and any(k.arg == "sort_keys" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords))


PRIMITIVES = (
    Primitive("the clock (datetime.now / utcnow / date.today)", "safebus.clock",
              _any_of(_calls("datetime", "now"), _calls("datetime", "utcnow"), _calls("date", "today"))),
    Primitive("base64", "safebus.b64", _imports("base64")),
    Primitive("password hashing (hashlib.scrypt)", "safebus.passwords", _calls("hashlib", "scrypt")),
    Primitive("an owner-only file write (os.open with O_CREAT)", "safebus.private_files", _creates_file_with_mode,
              also_allowed={"safebus.account_files": "its lock file holds no secret, only the flock"}),
    Primitive("canonical JSON (a canonical_json of its own, or json.dumps with sort_keys)", "safebus.jcs",
              _any_of(_defines("canonical_json"), _sorted_dumps),
              also_allowed={"safebus.app.demo": "its summary line is for a person to read; nothing hashes it",
                            "safebus.schemas.compatibility": "compares enum members for equality only; schemas sit "
                                                             "below the kernel, so it cannot import safebus.jcs"}),
)


def offences(modules: Mapping[str, Path], primitive: Primitive) -> Iterator[str]:
    """``path:line`` of every use of `primitive` outside the modules allowed to make it."""
    allowed = {primitive.home, *(primitive.also_allowed or {})}
    for module, path in sorted(modules.items()):
        if module in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if primitive.matches(node):
                yield f"{path}:{getattr(node, 'lineno', '?')}"


@pytest.mark.parametrize("primitive", PRIMITIVES, ids=lambda p: p.home)
def test_each_concern_has_one_home(primitive: Primitive) -> None:
    """Only the home module calls the primitive; everyone else calls the home."""
    modules = discover(package_dirs())
    assert primitive.home in modules, f"{primitive.home} is gone: move the rule with it"
    found = list(offences(modules, primitive))
    assert not found, f"{primitive.name} outside {primitive.home}: {found}"


def test_the_check_finds_a_stray_copy(tmp_path: Path) -> None:
    """A module that reads the time itself, imports base64, writes its own 0600 file or sorts its own JSON is named."""
    stray = tmp_path / "stray.py"
    stray.write_text("import base64\nimport os\nfrom datetime import datetime\n"
                     "def f():\n    os.open('k', os.O_WRONLY | os.O_CREAT, 0o600)\n    return datetime.now()\n"
                     "def canonical_json(v):\n    return json.dumps(v, sort_keys=True)\n"
                     "def pretty(v):\n    return json.dumps(v, indent=2, sort_keys=False)\n")
    modules = {"safebus.stray": stray}
    found = {p.home: list(offences(modules, p)) for p in PRIMITIVES}
    assert found == {"safebus.clock": [f"{stray}:6"], "safebus.b64": [f"{stray}:1"], "safebus.passwords": [],
                     "safebus.private_files": [f"{stray}:5"], "safebus.jcs": [f"{stray}:7", f"{stray}:8"]}

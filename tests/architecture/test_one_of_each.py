"""
One of each: the clock, base64, password hashing and the owner-only file write each live in one module.

Near-copies drift: one clock went naive, one base64 decoder was lenient, one secret write kept an
old file's mode. Each concern now has a home (`safebus.clock`, `safebus.b64`, `safebus.passwords`,
`safebus.private_files`) and this test reads every module's source (with `ast`, so lazy code
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


PRIMITIVES = (
    Primitive("the clock (datetime.now / utcnow / date.today)", "safebus.clock",
              _any_of(_calls("datetime", "now"), _calls("datetime", "utcnow"), _calls("date", "today"))),
    Primitive("base64", "safebus.b64", _imports("base64")),
    Primitive("password hashing (hashlib.scrypt)", "safebus.passwords", _calls("hashlib", "scrypt")),
    Primitive("an owner-only file write (os.open with O_CREAT)", "safebus.private_files", _creates_file_with_mode,
              also_allowed={"safebus.account_files": "its lock file holds no secret, only the flock"}),
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
    """A module that reads the time itself, imports base64 or writes its own 0600 file is named."""
    stray = tmp_path / "stray.py"
    stray.write_text("import base64\nimport os\nfrom datetime import datetime\n"
                     "def f():\n    os.open('k', os.O_WRONLY | os.O_CREAT, 0o600)\n    return datetime.now()\n")
    modules = {"safebus.stray": stray}
    found = {p.home: list(offences(modules, p)) for p in PRIMITIVES}
    assert found == {"safebus.clock": [f"{stray}:6"], "safebus.b64": [f"{stray}:1"], "safebus.passwords": [],
                     "safebus.private_files": [f"{stray}:5"]}

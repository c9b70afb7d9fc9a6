"""Every error safebus raises on purpose is a `SafebusError`, and the tree in core/errors.py is the real one.

One base lets the command line (and any caller) catch "safebus refused" in one clause and print its
diagnostics; a public error that escapes the tree is an exception a caller has to know about by name.
The drawing in errors.py's docstring is where a reader learns the failure domains, so it must not
drift: a class added without being drawn, or drawn under the wrong parent, fails here.

Classes are discovered, not listed: every module the layering checker finds is read with `ast`, and
each top-level class is looked up on the imported module, so a module moved or split elsewhere is
still checked without editing this file. Private exceptions (a leading underscore) are a module's own
control flow and are exempt, as errors.py says.
"""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from safebus import errors
from safebus.errors import SafebusError
from tests.architecture.layering import discover, package_dirs

# A line of the drawn tree: indentation (box-drawing rules or spaces), then the class name.
_TREE_LINE = re.compile(r"^(?P<lead>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Z]\w*)\b")


def _public_exceptions() -> dict[str, type[BaseException]]:
    """Every public exception class defined at the top level of a package module: name -> class."""
    found: dict[str, type[BaseException]] = {}
    for module_name, path in sorted(discover(package_dirs()).items()):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
        if not names:
            continue
        module = importlib.import_module(module_name)
        for name in names:
            candidate = getattr(module, name, None)
            if isinstance(candidate, type) and issubclass(candidate, BaseException):
                assert name not in found, f"two public exception classes named {name}; the drawing could not tell them"
                found[name] = candidate
    return found


def _drawn_tree(docstring: str) -> dict[str, str | None]:
    """The tree drawn after ``The hierarchy`` in ``docstring``: class name -> drawn parent (None at the root)."""
    lines = docstring.split("::", 1)[1].splitlines()
    drawn: dict[str, str | None] = {}
    stack: list[str] = []
    started = False
    for line in lines:
        if not line.strip():
            if started:
                break
            continue
        started = True
        body = line[4:]  # the literal block's own indentation
        match = _TREE_LINE.match(body)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["lead"]) // 4 + (0 if body[0].isalpha() else 1)
        del stack[depth:]
        drawn[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return drawn


@pytest.fixture(scope="module")
def public() -> dict[str, type[BaseException]]:
    """The package's public exception classes, by name."""
    return _public_exceptions()


@pytest.fixture(scope="module")
def drawn() -> dict[str, str | None]:
    """The tree drawn in errors.py's docstring."""
    assert errors.__doc__
    return _drawn_tree(errors.__doc__)


def test_every_public_exception_is_a_safebus_error(public: dict[str, type[BaseException]]) -> None:
    """A public exception class outside the tree fails here, naming its module."""
    outside = sorted(f"{cls.__module__}.{name}" for name, cls in public.items() if not issubclass(cls, SafebusError))
    assert not outside, "not a SafebusError (add it, keeping any builtin base):\n" + "\n".join(outside)


def test_the_drawn_tree_names_exactly_the_public_exceptions(
    public: dict[str, type[BaseException]], drawn: dict[str, str | None]
) -> None:
    """A class added but not drawn, or drawn but gone, fails here."""
    undrawn, gone = sorted(set(public) - set(drawn)), sorted(set(drawn) - set(public))
    assert (undrawn, gone) == ([], []), f"undrawn: {undrawn}; drawn but gone: {gone}"


def test_each_drawn_parent_is_a_direct_base(
    public: dict[str, type[BaseException]], drawn: dict[str, str | None]
) -> None:
    """The drawing's shape is the real one: each class hangs under the safebus error it derives from."""
    assert drawn["SafebusError"] is None
    wrong = sorted(
        f"{name} drawn under {parent}"
        for name, parent in drawn.items()
        if parent is not None and name in public and parent in public and public[parent] not in public[name].__bases__
    )
    assert not wrong, "\n".join(wrong)


def test_the_tree_reader_sees_depth() -> None:
    """The reader itself: nesting by box-drawing rules gives each name its parent."""
    sample = "x::\n\n    Root\n    ├── A   a\n    │   └── B   b\n    │       └── C\n    └── D\n\nafter\n"
    assert _drawn_tree(sample) == {"Root": None, "A": "Root", "B": "A", "C": "B", "D": "Root"}

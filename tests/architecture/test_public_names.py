"""Every `safebus` module says what it offers in ``__all__``, and says it truthfully.

``__all__`` is the line between a module's API and its workings: a reader, ``from m import *`` and
the type checker's re-export rule all go by it. It holds only if it is exact, so a module that
declares one lists every public name it defines (a class, function or assigned name without a
leading underscore; type parameters such as ``T = TypeVar("T")`` are annotation machinery and not
counted) and nothing it neither defines nor imports (an imported name may be listed on purpose, as
a re-export). A module that defines no public name (a package's ``__init__``, a ``__main__`` shim)
has nothing to promise and needs none.

The modules still without an exact ``__all__`` are listed below with why; the list is a ratchet
like test_layering's: an entry that no longer fails must leave it, so it only shrinks. An entry
names a module or a package and covers everything under it, so a module split into a package
stays covered until the split lands its own ``__all__``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.layering import discover, package_dirs
from tests.architecture.public_names import declared_all, defined_public_names, imported_names

IN_FLIGHT = "being reworked on another branch; its __all__ lands with that work"

# Module or package -> why it may still lack an exact __all__.
ALLOWED: dict[str, str] = {
}


def _problem(path: Path) -> str | None:
    """What is wrong with the ``__all__`` of the module at ``path``, or None when it is exact."""
    defined = defined_public_names(path)
    declared = declared_all(path)
    if declared is None:
        return f"declares no __all__ (defines {sorted(defined)})" if defined else None
    problems = []
    if len(declared) != len(set(declared)):
        problems.append("lists a name twice")
    if missing := sorted(defined - set(declared)):
        problems.append(f"defines but does not list {missing} (list them, or make them private with '_')")
    if unknown := sorted(set(declared) - defined - imported_names(path)):
        problems.append(f"lists {unknown}, which it neither defines nor imports")
    return "; ".join(problems) or None


def _covers(entry: str, module: str) -> bool:
    """An allow-list entry covers the module it names and every module under it."""
    return module == entry or module.startswith(entry + ".")


@pytest.fixture(scope="module")
def problems() -> dict[str, str]:
    """Every package module whose ``__all__`` is missing or inexact -> what is wrong."""
    found = {module: _problem(path) for module, path in discover(package_dirs()).items()}
    return {module: problem for module, problem in sorted(found.items()) if problem is not None}


def test_every_module_declares_an_exact_all(problems: dict[str, str]) -> None:
    """A new module without ``__all__``, or a name added without being listed, fails here, naming both."""
    unexpected = {m: p for m, p in problems.items() if not any(_covers(entry, m) for entry in ALLOWED)}
    assert not unexpected, "\n".join(f"{module}: {problem}" for module, problem in unexpected.items())


def test_the_allow_list_only_shrinks(problems: dict[str, str]) -> None:
    """An allowed module or package whose every module is now exact must leave the list with its fix."""
    stale = sorted(entry for entry in ALLOWED if not any(_covers(entry, module) for module in problems))
    assert not stale, "remove from ALLOWED:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import os\n\n__all__ = ['f']\n\ndef f() -> None: ...\n", None),
        ("from typing import TypeVar\n\nT = TypeVar('T')\n__all__ = ['X']\nX: int = 1\n", None),
        ("from os import path\n\n__all__ = ['path']\n", None),
        ("import os\n", None),
        ("def f() -> None: ...\n", "declares no __all__"),
        ("__all__ = ['f']\n\ndef f() -> None: ...\n\nclass C: ...\n", "defines but does not list ['C']"),
        ("__all__ = ['f', 'g']\n\ndef f() -> None: ...\n", "lists ['g'], which it neither"),
        ("__all__ = ['X']\n\nif True:\n    X = 1\n    Y = 2\n", "does not list ['Y']"),
    ],
    ids=["exact", "typevar-and-annotated", "re-export", "nothing-public", "no-all", "unlisted", "unknown",
         "conditional"],
)
def test_the_checker_reads_a_module(tmp_path: Path, source: str, problem: str | None) -> None:
    """The checker itself, on throwaway modules: what counts as defined, imported and listed."""
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    found = _problem(path)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found

"""The layering rule holds across the package: schemas <- kernel <- stages <- application.

A wrong-way import is how a kernel quietly becomes a stage, or a stage quietly
starts depending on another's internals; once a few exist nobody can tell which
direction is meant. The rule lives in tests/architecture/layering.py; this file
holds the ratchet: the wrong-way edges that still exist, each with why, and the
promise that the list only shrinks (an entry whose edge has gone fails too, so
the fix and the list's shrinking land in one commit).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.layering import Edge, Layer, discover, edges, layer_of, package_dirs, wrong_way

# Why each remaining wrong-way edge is still there (one line each).
MAIN_SHIM = "`python -m safebus` (README, tests, bench) stays the command; core/__main__.py only hands over"

# Each remaining wrong-way edge: (importer, imported) -> why.
ALLOWED: dict[Edge, str] = {
    Edge("safebus.__main__", "safebus.app.cli"): MAIN_SHIM,
}


@pytest.fixture(scope="module")
def found() -> set[Edge]:
    """Every distinct import edge among the installed package's modules."""
    return edges(discover(package_dirs()))


def test_no_wrong_way_import_outside_the_allow_list(found: set[Edge]) -> None:
    """A new import from the kernel into a stage, a stage into the application, a stage into another stage,
    or the schemas into the kernel fails here, naming the edge."""
    unexpected = sorted(wrong_way(found) - ALLOWED.keys())
    assert not unexpected, "\n".join(f"{edge.source} -> {edge.target}" for edge in unexpected)


def test_the_allow_list_only_shrinks(found: set[Edge]) -> None:
    """An allowed edge that no longer exists (or is no longer wrong-way) must leave the list with its fix."""
    stale = sorted(ALLOWED.keys() - wrong_way(found))
    assert not stale, "remove from ALLOWED:\n" + "\n".join(f"{edge.source} -> {edge.target}" for edge in stale)


def test_the_checker_sees_every_package(found: set[Edge]) -> None:
    """Every mapped folder contributes modules, so a layer cannot silently drop out of the check."""
    modules = discover(package_dirs())
    assert {layer_of(name) for name in modules} >= {Layer.SCHEMAS, Layer.KERNEL, Layer.STAGE}
    assert any(edge.source.startswith("safebus.consumers.") for edge in found)


def _tree(root: Path, files: dict[str, str]) -> dict[str, Path]:
    """A throwaway `safebus` tree under ``root`` (relative path -> source), mapped like pyproject maps ours."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return discover(
        {
            "safebus": root / "core",
            "safebus.schemas": root / "schemas",
            "safebus.consumers": root / "consumers",
            "safebus.processors": root / "processors",
            "safebus.app": root / "app",
        }
    )


LEDGER = "safebus.consumers.audit.ledger"
_BASE = {
    "core/__init__.py": "",
    "core/envelope.py": "",
    "schemas/__init__.py": "",
    "schemas/audit.py": "",
    "consumers/__init__.py": "",
    "consumers/audit/__init__.py": "",
    "consumers/audit/ledger.py": "",
    "processors/__init__.py": "",
    "processors/handler.py": "",
    "app/__init__.py": "",
    "app/cli.py": "from safebus.consumers.audit import ledger\nfrom safebus.processors import handler\n",
}


@pytest.mark.parametrize(
    ("module", "source", "edge"),
    [
        ("core/envelope.py", "from safebus.consumers.audit.ledger import X\n", ("safebus.envelope", LEDGER)),
        ("core/envelope.py", "def f() -> None:\n    import safebus.app.cli\n", ("safebus.envelope", "safebus.app.cli")),
        ("schemas/audit.py", "from safebus import envelope\n", ("safebus.schemas.audit", "safebus.envelope")),
        ("consumers/audit/ledger.py", "from ...processors.handler import f\n", (LEDGER, "safebus.processors.handler")),
        ("consumers/audit/ledger.py", "from safebus.app import cli\n", (LEDGER, "safebus.app.cli")),
        (
            "consumers/audit/ledger.py",
            "import importlib\nM = importlib.import_module('safebus.processors.handler')\n",
            ("safebus.consumers.audit.ledger", "safebus.processors.handler"),
        ),
        (
            "consumers/audit/ledger.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from safebus.processors import handler\n",
            ("safebus.consumers.audit.ledger", "safebus.processors.handler"),
        ),
    ],
    ids=["kernel->stage", "lazy kernel->app", "schemas->kernel", "relative stage->stage", "stage->app",
         "importlib", "type-checking"],
)
def test_the_checker_catches_a_deliberate_wrong_way_import(
    tmp_path: Path, module: str, source: str, edge: tuple[str, str]
) -> None:
    """Written into a throwaway tree, each kind of wrong-way import is found, and nothing else is."""
    modules = _tree(tmp_path, {**_BASE, module: source})
    assert wrong_way(edges(modules)) == {Edge(*edge)}


def test_the_right_way_round_is_allowed(tmp_path: Path) -> None:
    """The application importing every stage, a stage importing the kernel and schemas, and a
    sub-package importing its sibling (relative import) are all fine."""
    modules = _tree(
        tmp_path,
        {
            **_BASE,
            "consumers/audit/ledger.py": (
                "from safebus import envelope\nfrom safebus.schemas import audit\nfrom . import web\n"
            ),
            "consumers/audit/web.py": "from ..audit.ledger import X\n",
        },
    )
    found = edges(modules)
    assert Edge("safebus.consumers.audit.ledger", "safebus.consumers.audit.web") in found
    assert Edge("safebus.app.cli", "safebus.processors.handler") in found
    assert wrong_way(found) == set()

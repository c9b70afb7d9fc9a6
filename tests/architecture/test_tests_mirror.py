"""The unit tests mirror the package, so the tests of a module are found where the module is.

The rule (issue 13):

* A unit test of a module sits under ``tests/unit/`` at the path of the
  module's package folder: ``core/envelope.py`` (``safebus.envelope``) is
  tested in ``tests/unit/core/``, ``consumers/inbox/worker.py`` in
  ``tests/unit/consumers/inbox/``. The top-level folders are the ones
  pyproject's ``package-dir`` maps (``core``, ``schemas``, ``producers``,
  ``processors``, ``consumers``, ``deploy``, ``app``); a folder below them must
  be a package folder (one with ``__init__.py``) of the source tree.
* Its file is named after the module: ``test_<module>.py``, or
  ``test_<module>_<aspect>.py`` when one module has more than one test file
  (``processors/test_engine_golden.py``, ``processors/test_engine_properties.py``).
  The module is a ``.py`` file or a sub-package of that folder; a private
  module's leading underscore is dropped (``consumers/_delivery.py`` is tested
  by ``consumers/test_delivery.py``).
* A test of a behaviour that spans modules or stages — every worker against
  the hostile corpus, a contract's text rule from the gateway through the
  router to the audit, signing in to three web apps over HTTP — is about no
  one module and sits in ``tests/unit/behaviours/``, where the name says the
  behaviour. A test that is mostly about one module with others as props
  stays with that module (``core/test_limits.py`` checks the limits against
  the gateway and the broker, and is named after ``safebus.limits``).

Nothing else sits in ``tests/unit/``: not a test file at its top, not a folder
the package does not have. Same-named files in different folders
(``consumers/inbox/test_store.py``, ``consumers/queues/test_store.py``) do not
clash, because every folder is a package and pytest's importlib mode names a
test module by its dotted path.

The check is a pure function over two trees so it can be shown to fail on a
fake tree; the last test holds the real one to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.layering import REPO, package_dirs

__all__ = ["BEHAVIOURS", "module_names", "strays"]

BEHAVIOURS = "behaviours"
"""The one folder under tests/unit/ that mirrors no package: behaviours spanning modules."""


def module_names(folder: Path) -> set[str]:
    """What a test file in the mirror of ``folder`` may be named after: its modules and sub-packages.

    A leading underscore is dropped (a private module is still tested by name); ``__init__`` and
    ``__main__`` name nothing a test file would be named after.
    """
    names: set[str] = set()
    for path in folder.iterdir():
        if path.is_file() and path.suffix == ".py" and not path.name.startswith("__"):
            names.add(path.stem.lstrip("_"))
        elif path.is_dir() and (path / "__init__.py").is_file():
            names.add(path.name.lstrip("_"))
    return names


def _named_after(stem: str, modules: set[str]) -> bool:
    """Whether ``test_<module>[_<aspect>]`` names one of ``modules`` (which may contain underscores)."""
    parts = stem.removeprefix("test_").split("_")
    return any("_".join(parts[:end]) in modules for end in range(1, len(parts) + 1))


def strays(unit_tests: Path, source_folders: dict[str, Path]) -> list[str]:
    """Every test file under ``unit_tests`` that breaks the mirror rule, with what is wrong and where.

    ``source_folders`` maps a top-level test folder's name to the source folder it mirrors
    (``"core" -> <repo>/core``). An empty list means the tree mirrors the package.
    """
    problems: list[str] = []
    for test in sorted(unit_tests.rglob("test_*.py")):
        relative = test.relative_to(unit_tests)
        where = relative.parent.parts
        if not where:
            problems.append(f"tests/unit/{relative}: sits at the top of tests/unit/; move it to the folder "
                            f"that mirrors the module it tests (e.g. tests/unit/core/), or to tests/unit/{BEHAVIOURS}/")
            continue
        if where[0] == BEHAVIOURS:
            if len(where) > 1:
                problems.append(f"tests/unit/{relative}: tests/unit/{BEHAVIOURS}/ has no sub-folders")
            continue
        if where[0] not in source_folders:
            problems.append(f"tests/unit/{relative}: tests/unit/{where[0]}/ mirrors no package folder "
                            f"(there are {', '.join(sorted(source_folders))} and {BEHAVIOURS})")
            continue
        folder = source_folders[where[0]].joinpath(*where[1:])
        if not (folder / "__init__.py").is_file():
            problems.append(f"tests/unit/{relative}: {'/'.join(where)}/ is not a package folder of the source tree")
            continue
        modules = module_names(folder)
        if not _named_after(test.stem, modules):
            problems.append(f"tests/unit/{relative}: names no module of {'/'.join(where)}/ "
                            f"(test_<module>[_<aspect>].py, modules: {', '.join(sorted(modules))}); "
                            f"rename it, move it, or put a cross-module behaviour in tests/unit/{BEHAVIOURS}/")
    return problems


def _source_folders(repo: Path = REPO) -> dict[str, Path]:
    """The top-level source folders pyproject maps into the `safebus` namespace, by folder name."""
    return {folder.name: folder for folder in package_dirs(repo / "pyproject.toml").values()}


# --- The rule on fake trees: each way to break it is caught and named. ---------------------------


def _fake_repo(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A source tree of two packages and an empty unit-test tree beside it."""
    for module in ("core/__init__.py", "core/envelope.py", "core/dead_letter_retry.py",
                   "consumers/__init__.py", "consumers/_delivery.py",
                   "consumers/inbox/__init__.py", "consumers/inbox/worker.py",
                   "consumers/audit/__init__.py", "consumers/audit/projection/__init__.py"):
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    unit = tmp_path / "tests" / "unit"
    unit.mkdir(parents=True)
    return unit, {"core": tmp_path / "core", "consumers": tmp_path / "consumers"}


def _touch(unit: Path, relative: str) -> None:
    path = unit / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


@pytest.mark.parametrize("relative", [
    "core/test_envelope.py",
    "core/test_envelope_vectors.py",
    "core/test_dead_letter_retry.py",
    "consumers/test_delivery.py",
    "consumers/inbox/test_worker.py",
    "consumers/audit/test_projection.py",
    "behaviours/test_hostile_records.py",
])
def test_a_file_named_after_a_module_in_its_mirror_passes(tmp_path: Path, relative: str) -> None:
    unit, folders = _fake_repo(tmp_path)
    _touch(unit, relative)
    assert strays(unit, folders) == []


@pytest.mark.parametrize(("relative", "says"), [
    ("test_envelope.py", "sits at the top of tests/unit/"),
    ("kernel/test_envelope.py", "tests/unit/kernel/ mirrors no package folder"),
    ("consumers/queues/test_worker.py", "is not a package folder"),
    ("core/test_worker.py", "names no module of core/"),
    ("consumers/inbox/test_inbox_store.py", "names no module of consumers/inbox/"),
    ("core/test_dead_letter.py", "names no module of core/"),
    ("behaviours/kill/test_restart.py", "has no sub-folders"),
])
def test_a_misplaced_file_is_named_with_what_is_wrong(tmp_path: Path, relative: str, says: str) -> None:
    unit, folders = _fake_repo(tmp_path)
    _touch(unit, "core/test_envelope_vectors.py")  # a good neighbour is not reported
    _touch(unit, relative)
    problems = strays(unit, folders)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"tests/unit/{relative}: ")
    assert says in problems[0]


def test_the_mirror_knows_every_top_level_source_folder() -> None:
    assert set(_source_folders()) == {"core", "schemas", "producers", "processors", "consumers", "deploy", "app"}


# --- The real tree. ------------------------------------------------------------------------------


def test_every_unit_test_sits_where_the_module_it_tests_is() -> None:
    problems = strays(REPO / "tests" / "unit", _source_folders())
    assert not problems, "unit tests that do not mirror the package:\n  " + "\n  ".join(problems)


def test_every_folder_of_the_unit_tests_is_a_package() -> None:
    """Without ``__init__.py`` two ``test_store.py`` files would share a module name; with it they never do."""
    unit = REPO / "tests" / "unit"
    missing = [str(folder.relative_to(REPO)) for folder in sorted(unit.rglob("*"))
               if folder.is_dir() and folder.name != "__pycache__" and not (folder / "__init__.py").is_file()]
    assert not missing, f"folders of tests/unit without __init__.py: {missing}"

"""
The published contract files, and the checks that keep them honest.

Layout under the ``schemas/`` folder::

    json/<event-type>/<version>.json   JSON Schema 2020-12, one file per version
    json/released.json                 SHA-256 of every released version file
    examples/<event-type>.json         one valid example payload per contract
    asyncapi.json                      the bus as an AsyncAPI 3.0 document

Three rules, each enforced by `problems()` (and so by CI):

1. **Fresh**: the file of each contract's current version, its example and the
   AsyncAPI document are exactly what the registries generate
   (``safebus schemas generate`` rewrites them).
2. **Immutable once released**: a version listed in ``released.json`` must keep
   its hash.  Changing a released contract means a new version
   (``SCHEMA_VERSION`` on the model), never an edit.
3. **Compatible**: the current version is checked against every other version
   file of the same contract with its compatibility mode (transitively); the
   text character rule (`safebus.schemas.text.TOLERATED_PATTERNS`) is the one
   narrowing tolerated.

``safebus schemas release`` records the current versions in the lock.

It lives in the application layer because the AsyncAPI document it checks is
built by the kernel (topics, envelope and record headers) around the
contracts: the schemas layer below the kernel could not import it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safebus import schemas
from safebus.asyncapi import asyncapi_document
from safebus.schemas.compatibility import Mode, check_transitive
from safebus.schemas.examples import EXAMPLES
from safebus.schemas.registry import CONTRACTS, Compatibility, ContractSpec
from safebus.schemas.text import TOLERATED_PATTERNS

__all__ = [
    "LOCK_NAME",
    "SOURCE_DIR",
    "example_document",
    "example_path",
    "generate",
    "incompatibilities",
    "problems",
    "read_lock",
    "release",
    "released_changes",
    "render",
    "schema_path",
    "stale_files",
    "versions",
]

SOURCE_DIR = Path(schemas.__file__).resolve().parent
"""The ``schemas/`` folder of a source checkout (generation is a development task)."""
LOCK_NAME = "released.json"

_MODES = {Compatibility.FULL_TRANSITIVE: Mode.FULL, Compatibility.BACKWARD_TRANSITIVE: Mode.BACKWARD}


def render(document: Mapping[str, Any]) -> str:
    """Serialise a JSON document the way the repository stores it (stable, reviewable diffs)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_path(root: Path, event_type: str, version: str) -> Path:
    """Where the schema of `event_type` at `version` lives under `root`."""
    return root / "json" / event_type / f"{version}.json"


def example_path(root: Path, event_type: str) -> Path:
    """Where the example payload of `event_type` lives under `root`."""
    return root / "examples" / f"{event_type}.json"


def example_document(spec: ContractSpec) -> dict[str, Any]:
    """The example payload of `spec` as JSON data."""
    document: dict[str, Any] = json.loads(EXAMPLES[spec.event_type]().model_dump_json())
    return document


def _expected(root: Path) -> dict[Path, str]:
    files = {}
    for spec in CONTRACTS:
        files[schema_path(root, spec.event_type, spec.version)] = render(spec.json_schema())
        files[example_path(root, spec.event_type)] = render(example_document(spec))
    files[root / "asyncapi.json"] = render(asyncapi_document())
    return files


def generate(root: Path = SOURCE_DIR) -> list[Path]:
    """Write every current schema and example; return the files that changed."""
    changed = []
    for path, text in _expected(root).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def versions(root: Path, event_type: str) -> list[str]:
    """Every version file of `event_type`, oldest first."""
    folder = root / "json" / event_type
    return sorted((p.stem for p in folder.glob("*.json")), key=_version_key) if folder.is_dir() else []


def read_lock(root: Path) -> dict[str, dict[str, str]]:
    """The release lock: event type -> version -> SHA-256 of the released file."""
    path = root / "json" / LOCK_NAME
    lock: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    return lock


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release(root: Path = SOURCE_DIR) -> list[str]:
    """Record every current version as released; return the newly released ``type@version`` names."""
    lock = read_lock(root)
    added = []
    for spec in CONTRACTS:
        path = schema_path(root, spec.event_type, spec.version)
        entry = lock.setdefault(spec.event_type, {})
        if spec.version not in entry:
            entry[spec.version] = _digest(path)
            added.append(f"{spec.event_type}@{spec.version}")
    (root / "json" / LOCK_NAME).write_text(render({k: dict(sorted(v.items())) for k, v in sorted(lock.items())}))
    return added


def stale_files(root: Path = SOURCE_DIR) -> list[str]:
    """Rule 1: generated files that are missing or differ from what the models produce."""
    return [
        f"{path.relative_to(root)} is stale: run 'safebus schemas generate'"
        for path, text in _expected(root).items()
        if not path.exists() or path.read_text() != text
    ]


def released_changes(root: Path = SOURCE_DIR) -> list[str]:
    """Rule 2: released version files that were edited or deleted."""
    problems = []
    for event_type, released in read_lock(root).items():
        for version, digest in released.items():
            path = schema_path(root, event_type, version)
            if not path.exists():
                problems.append(f"{event_type} {version} is released but its schema file was deleted")
            elif _digest(path) != digest:
                problems.append(
                    f"{event_type} {version} is released and must not change: give the model a new SCHEMA_VERSION"
                )
    return problems


def _comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """Drop our own root annotations (``x-safebus-*``): they name the version, which always differs."""
    return {k: v for k, v in document.items() if not k.startswith("x-")}


def incompatibilities(root: Path = SOURCE_DIR) -> list[str]:
    """Rule 3: every break between a current schema and an earlier version of the same contract."""
    problems = []
    for spec in CONTRACTS:
        history = [v for v in versions(root, spec.event_type) if v != spec.version]
        documents = [_comparable(json.loads(schema_path(root, spec.event_type, v).read_text())) for v in history]
        for index, found in check_transitive(documents, _comparable(spec.json_schema()), _MODES[spec.compatibility],
                                             tolerated_patterns=TOLERATED_PATTERNS):
            problems.append(
                f"{spec.event_type} {spec.version} is not {spec.compatibility.value} compatible with "
                f"{history[index]}: {found.path}: {found.message} ({found.direction})"
            )
    return problems


def problems(root: Path = SOURCE_DIR) -> list[str]:
    """Every rule's problems, in order; empty when the contracts are publishable."""
    return stale_files(root) + released_changes(root) + incompatibilities(root)

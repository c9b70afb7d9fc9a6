"""
The consumers' stores' schema versions: ``sqlite/`` and ``postgresql/`` hold one ``<store>-NNNN-<what>.sql`` each.

One folder per engine, since the two spell some column types differently
(``BLOB``/``BYTEA``, ``REAL``/``DOUBLE PRECISION``); one file prefix per
store (``inbox-``, ``queues-``, ``monitor-``), so every store can share one
PostgreSQL database or keep its own SQLite file.  Migration 0001 of each
store is its schema as the store created it before migrations existed
(``IF NOT EXISTS``, so it is a no-op on such a file).  A new migration is a
new number in *both* folders: tests/unit/consumers/test_migrations.py keeps
the ids equal, and tests/integration/test_stores_on_both_engines.py runs
every store on both engines.  How they are applied: `safebus.migrations`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIGRATIONS"]

MIGRATIONS = Path(__file__).resolve().parent
"""The folder holding ``sqlite/`` and ``postgresql/`` (a `safebus.migrations.Schema` folder)."""

"""
The dialect seam of the projection: the kernel's (`safebus.sql_dialects`), which every store shares.

The projection was the first store on two engines; its seam moved to the
kernel so that the consumers' other stores use the same one.  The names stay
importable from here for the projection's callers.
"""

from __future__ import annotations

from safebus.sql_dialects import Dialect, PostgreSQLDialect, SQLiteDialect

__all__ = [
    "Dialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
]

"""
The one clock: what "now" means everywhere in safebus, and the type a component takes to be told it.

Every component that stamps or compares a time takes a ``clock`` argument of type `Clock` and
defaults it to `utc_now`, instead of calling ``datetime.now`` itself.  That is what lets the
tests, the replay tools and the simulated year run a component at a fixed or moving time, and
it keeps every stamp timezone-aware UTC (a naive ``datetime.now()`` would compare wrongly with
the UTC times in payloads and headers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utc_now"]

Clock = Callable[[], datetime]
"""A source of the current time: `utc_now` in production, a fixed or stepping function in tests."""


def utc_now() -> datetime:
    """The production clock: the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)

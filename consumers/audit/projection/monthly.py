"""
The calendar and deadline arithmetic behind the monthly Operation Encompass figures.

Month bounds in the partnership's time zone, medians and on-time counts:
pure functions over rows, kept out of the store so they read (and test) on
their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from safebus.consumers.audit.projection.results import OnTime, QueryError, Row

__all__ = [
    "ENCOMPASS_RECIPIENT_KINDS",
    "month_bounds",
]

ENCOMPASS_RECIPIENT_KINDS = frozenset({"school"})
"""
Recipient kinds whose shares are Operation Encompass notifications to an education setting.

The engine (`processors/engine.py`) builds an `EncompassNotification` exactly
when a rule's ``recipient_kind`` is ``school`` (agreement
``operation-encompass``, clause 4.1).  The early-years opt-in (clause 3.2) goes
to ``health`` and the home-education officer (4.2) to ``childrens-services``:
those are not notifications to a setting, so they are not counted.
"""

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_bounds(month: str, zone: str = "Europe/London") -> tuple[datetime, datetime]:
    """
    The first instant of `month` (``YYYY-MM``) and of the next, in `zone`, as aware datetimes.

    Monthly figures follow the partnership's calendar, not UTC: in British
    Summer Time a decision at 23:30 UTC on 30 September belongs to October.
    Raises QueryError for a malformed month or an unknown zone.
    """
    matched = _MONTH.match(month)
    if matched is None:
        raise QueryError(f"not a month: {month!r} (use YYYY-MM)")
    try:
        tz = ZoneInfo(zone)
    except (ValueError, KeyError) as exc:
        raise QueryError(f"unknown time zone {zone!r}") from exc
    year, number = int(matched.group(1)), int(matched.group(2))
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start, end


def _median(values: Sequence[timedelta]) -> timedelta | None:
    """The median (the mean of the middle two for an even count), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _on_time(sent: Mapping[str, Row], done_at: Mapping[str, datetime], due_by: Mapping[str, datetime]) -> OnTime:
    on_time = late = unknown = 0
    for output in sent:
        due = due_by.get(output)
        if due is None:
            unknown += 1
        elif output in done_at and done_at[output] <= due:
            on_time += 1
        else:
            late += 1
    return OnTime(on_time=on_time, late=late, unknown=unknown)


def _police_on_time(sent: Mapping[str, Row], late: Mapping[str, int | None]) -> OnTime:
    """The police's clock: 0 minutes late is on time, more is late, no deadline fact or lateness is unknown."""
    known = [late.get(output) for output in sent]
    return OnTime(on_time=sum(1 for m in known if m == 0), late=sum(1 for m in known if m is not None and m > 0),
                  unknown=sum(1 for m in known if m is None))

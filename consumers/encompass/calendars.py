"""
School calendars, and the Operation Encompass deadline computed from them.

Operation Encompass asks that a child's Key Adult knows about a domestic-abuse
incident *before the start of the next school day*.  "Next school day" is a
property of the child's setting, not of the country: term dates, INSET days,
closures and even the time the first session starts differ between schools,
and Welsh schools keep Welsh term dates.  So `due_by` is computed on a
`SettingCalendar` (one school's calendar) and never on a generic working-day
calendar.  Delivery itself is never held back to the deadline; the deadline
only says when an unacknowledged notification must be escalated, and
`first_day_back` says when a weekend or holiday notification must be surfaced
again.

Calendars are reference data in a TOML file, read by
`safebus.consumers.encompass.calendar_files`, which also describes the format.
A setting's calendar is its own values overlaid on the partnership's defaults;
an unknown URN gets the defaults, flagged as such (an estimate, not a fact
about that school).  `CalendarBook.version` is a digest of everything a
deadline depends on, so an audit record can say which calendar computed it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from safebus.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEZONE",
    "FORMAT",
    "NATIONS",
    "AcademicYears",
    "CalendarBook",
    "CalendarError",
    "CalendarHorizonError",
    "Nation",
    "PartnershipCalendarDefaults",
    "Resolution",
    "SessionTime",
    "SettingCalendar",
    "Term",
    "TimeZoneName",
    "Urn",
    "WeekdaySessionStarts",
    "academic_horizon",
    "cross_field_problems",
    "national_bank_holidays",
]

Nation = Literal["england", "wales"]
"""Which bank holidays apply (and, by convention, whose term dates)."""
Resolution = Literal["setting", "partnership-default"]
"""Whether a calendar is the setting's own, or the partnership's defaults standing in for an unknown setting."""

FORMAT: Final = 1
"""The calendar file format `safebus.consumers.encompass.calendar_files` reads."""
DEFAULT_TIMEZONE: Final = "Europe/London"
_SUBDIVISIONS: Final[Mapping[Nation, str]] = MappingProxyType({"england": "ENG", "wales": "WLS"})
NATIONS: Final[tuple[Nation, ...]] = tuple(_SUBDIVISIONS)
"""Every nation a calendar may be in."""
_EARLIEST_START: Final = time(6, 0)
_LATEST_START: Final = time(13, 0)
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ACADEMIC_YEAR: Final = re.compile(r"^(\d{4})-(\d{2})$")


class CalendarError(ConfigError):
    """
    A calendar file or calendar is invalid.

    `problems` lists every problem found, each naming where it is (``[partnership]``
    or ``setting <urn>``) and the field, so one run of the loader shows all of them.
    """

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__("\n  - ".join((message, *self.problems)) if self.problems else message)


class CalendarHorizonError(CalendarError):
    """
    A date lies outside what the loaded calendar knows.

    Raised rather than guessing: a deadline computed past the last known term
    would be silently wrong.  The remedy is to add the next academic year's term
    dates to the calendar file.
    """

    def diagnostics(self) -> str:
        """Explain the remedy to a command-line user."""
        return f"{self}\nAdd the next academic year's term dates and INSET days to the calendar file."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _session_time(value: time) -> time:
    """
    Accept a wall-clock session start between 06:00 and 13:00.

    A session start is local wall-clock time, so an offset would be wrong half
    the year; the bounds catch typos such as "20:45" for "08:45" (which would
    put every deadline after the child had arrived) while still allowing an
    afternoon-only nursery session.  No UK clock change happens inside them, so
    every session start exists exactly once on every date.
    """
    if value.tzinfo is not None:
        raise ValueError("a session start is local wall-clock time: give it without a UTC offset")
    if not _EARLIEST_START <= value <= _LATEST_START:
        raise ValueError(f"session start {value:%H:%M} is outside {_EARLIEST_START:%H:%M}-{_LATEST_START:%H:%M}")
    return value


SessionTime = Annotated[time, AfterValidator(_session_time)]
"""A local wall-clock session start, written "08:45"."""
Urn = Annotated[str, Field(pattern=r"^\d{6}$", description="DfE unique reference number")]


class Term(_Strict):
    """One block of term, inclusive of both dates (a half term is the gap between two terms)."""

    start: date
    end: date
    name: str | None = None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Term:
        if self.end < self.start:
            raise ValueError(f"term {self.label()}: end {self.end} is before start {self.start}")
        return self

    def label(self) -> str:
        """The term as people say it, for error messages."""
        span = f"{self.start}..{self.end}"
        return f"'{self.name}' ({span})" if self.name else span


class WeekdaySessionStarts(_Strict):
    """Per-weekday session starts that differ from the usual one (a weekly late start for staff training)."""

    monday: SessionTime | None = None
    tuesday: SessionTime | None = None
    wednesday: SessionTime | None = None
    thursday: SessionTime | None = None
    friday: SessionTime | None = None

    def on(self, weekday: int) -> time | None:
        """The override for `weekday` (0 = Monday, as `date.weekday()`), or None."""
        value: time | None = getattr(self, _WEEKDAYS[weekday], None) if weekday < 5 else None
        return value


def academic_horizon(academic_years: tuple[str, ...]) -> tuple[date, date]:
    """First and last day covered by consecutive academic years ("2025-26" = 1 Aug 2025 to 31 Jul 2026)."""
    firsts = [_academic_year_start(y) for y in academic_years]
    return date(firsts[0], 8, 1), date(firsts[-1] + 1, 7, 31)


def _academic_year_start(label: str) -> int:
    """The calendar year an academic year starts in, validating the label's form."""
    match = _ACADEMIC_YEAR.match(label)
    if not match or (int(match[1]) + 1) % 100 != int(match[2]):
        raise ValueError(f"academic year {label!r} should look like '2025-26'")
    return int(match[1])


def _check_academic_years(years: tuple[str, ...]) -> tuple[str, ...]:
    firsts = [_academic_year_start(y) for y in years]
    if any(b != a + 1 for a, b in pairwise(firsts)):
        raise ValueError(f"academic years must be consecutive and in order: {list(years)}")
    return years


AcademicYears = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_check_academic_years)]


def _check_timezone(key: str) -> str:
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {key!r}") from exc
    return key


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


@lru_cache(maxsize=16)
def national_bank_holidays(nation: Nation, first_year: int, last_year: int) -> frozenset[date]:
    """Bank holidays (including substitute days) of `nation` in the given calendar years, from `holidays`."""
    table = holidays.country_holidays("GB", subdiv=_SUBDIVISIONS[nation], years=range(first_year, last_year + 1))
    return frozenset(table.keys())


class _Problems(ValueError):
    """Cross-field problems with a calendar, each as (field, message), so the loader can say where they came from."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))
        self.problems = problems


def cross_field_problems(cause: object) -> list[tuple[str, str]] | None:
    """
    The (field, message) problems a calendar's cross-field check raised, when `cause` is that error; else None.

    Pydantic wraps what a validator raises; the file reader unwraps it this
    way to say where each problem came from (and whether it was inherited).
    """
    return cause.problems if isinstance(cause, _Problems) else None


class PartnershipCalendarDefaults(_Strict):
    """
    The partnership's default calendar: what a setting inherits unless it says otherwise.

    Most maintained schools in a local authority keep the authority's term dates
    and session times, so settings only list what differs.  `academic_years`
    also fixes the horizon of every calendar in the file.
    """

    name: str | None = None
    nation: Nation
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    academic_years: AcademicYears
    session_start: SessionTime
    terms: tuple[Term, ...] = Field(min_length=1)
    inset_days: tuple[date, ...] = ()
    closures: tuple[date, ...] = ()



class SettingCalendar(_Strict):
    """
    One setting's effective calendar, and the school-day arithmetic on it.

    A school day is a weekday inside a term that is not a bank holiday of the
    setting's nation, an INSET day or a closure.  Every method is pure: the
    answer depends only on this calendar and the arguments (never on the clock),
    so a deadline can be recomputed and audited later.  Dates outside
    [`horizon_start`, `horizon_end`] raise `CalendarHorizonError`.
    """

    urn: Urn | None = Field(default=None, description="None for the partnership's own default calendar")
    name: str | None = None
    resolution: Resolution = "setting"
    calendar_version: str | None = Field(default=None, description="CalendarBook.version it was loaded from")
    nation: Nation
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    academic_years: AcademicYears
    session_start: SessionTime
    weekday_session_starts: WeekdaySessionStarts = WeekdaySessionStarts()
    terms: tuple[Term, ...] = Field(min_length=1)
    inset_days: tuple[date, ...] = ()
    closures: tuple[date, ...] = ()

    _tz: ZoneInfo = PrivateAttr()
    _bank_holidays: frozenset[date] = PrivateAttr()
    _school_days: tuple[date, ...] = PrivateAttr()
    _school_day_set: frozenset[date] = PrivateAttr()

    @model_validator(mode="after")
    def _consistent(self) -> SettingCalendar:
        # (1): terms in order, not overlapping, inside the horizon, and every academic year has one.
        first, last = academic_horizon(self.academic_years)
        holidays_in = national_bank_holidays(self.nation, first.year, last.year)
        problems: list[tuple[str, str]] = []
        ordered = sorted(self.terms, key=lambda t: t.start)
        for before, after in pairwise(ordered):
            if after.start <= before.end:
                problems.append(("terms", f"{after.label()} overlaps {before.label()}"))
        for term in ordered:
            if term.start < first or term.end > last:
                problems.append(("terms", f"{term.label()} is outside academic years {', '.join(self.academic_years)}"
                                          f" ({first}..{last})"))
        for year in self.academic_years:
            start = date(_academic_year_start(year), 8, 1)
            if not any(start <= t.start < start.replace(year=start.year + 1) for t in ordered):
                problems.append(("terms", f"academic year {year} has no terms"))
        # (2): INSET days are distinct weekdays in term that are not bank holidays (else they are typos).
        if len(set(self.inset_days)) != len(self.inset_days):
            problems.append(("inset_days", "an INSET day is listed twice"))
        for day in sorted(set(self.inset_days)):
            if day.weekday() >= 5:
                problems.append(("inset_days", f"{day} is a {_WEEKDAYS[day.weekday()].title()}"))
            elif day in holidays_in:
                problems.append(("inset_days", f"{day} is a bank holiday in {self.nation.title()}"))
            elif not any(t.start <= day <= t.end for t in ordered):
                problems.append(("inset_days", f"{day} is not in any term"))
        # (3): closures lie inside the horizon (out of term they change nothing, which is allowed).
        for day in self.closures:
            if not first <= day <= last:
                problems.append(("closures", f"{day} is outside {first}..{last}"))
        if problems:
            raise _Problems(problems)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Precompute the sorted school days once: every query is then a binary search."""
        first, last = academic_horizon(self.academic_years)
        self._tz = ZoneInfo(self.timezone)
        self._bank_holidays = national_bank_holidays(self.nation, first.year, last.year)
        closed = {*self.inset_days, *self.closures, *self._bank_holidays}
        days: list[date] = []
        for term in sorted(self.terms, key=lambda t: t.start):
            day = term.start
            while day <= term.end:
                if day.weekday() < 5 and day not in closed:
                    days.append(day)
                day += timedelta(days=1)
        self._school_days = tuple(days)
        self._school_day_set = frozenset(days)

    # -- what the calendar covers -------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        """The setting's local time zone (session starts are wall-clock times in it)."""
        return self._tz

    @property
    def horizon_start(self) -> date:
        """The first date this calendar can answer for (1 August of its first academic year)."""
        return academic_horizon(self.academic_years)[0]

    @property
    def horizon_end(self) -> date:
        """The last date this calendar can answer for (31 July after its last academic year)."""
        return academic_horizon(self.academic_years)[1]

    @property
    def bank_holidays(self) -> frozenset[date]:
        """The bank holidays of the setting's nation over the horizon's calendar years."""
        return self._bank_holidays

    @property
    def school_days(self) -> tuple[date, ...]:
        """Every school day in the horizon, in order."""
        return self._school_days

    # -- school days ----------------------------------------------------------------

    def is_school_day(self, day: date) -> bool:
        """
        Whether pupils attend on `day`.

        Raises CalendarHorizonError if `day` is outside the horizon, where the
        honest answer is "unknown", not False.
        """
        self._within_horizon(day)
        return day in self._school_day_set

    def session_start_time(self, day: date) -> time:
        """The local wall-clock session start on `day`'s weekday (whether or not `day` is a school day)."""
        return self.weekday_session_starts.on(day.weekday()) or self.session_start

    def session_start_on(self, day: date) -> datetime:
        """
        The instant the first session starts on school day `day`, as an aware UTC datetime.

        The wall-clock time is fixed, so its UTC offset follows British Summer
        Time.  Raises ValueError if `day` is not a school day.
        """
        if not self.is_school_day(day):
            raise ValueError(f"{day} is not a school day for {self._who()}")
        return datetime.combine(day, self.session_start_time(day), tzinfo=self._tz).astimezone(UTC)

    def next_session_start(self, after: datetime) -> datetime:
        """
        The first session start strictly after the instant `after` (aware UTC).

        An instant before the morning's start on a school day gives that
        morning; an instant at or after it gives the next school day's start,
        because by then the Key Adult can no longer know "before the start".
        Raises ValueError for a naive `after` (its local date would be a guess)
        and CalendarHorizonError if the calendar knows no school day after it.
        """
        local_day = self._local_date(after)
        index = bisect_left(self._school_days, local_day)
        # At most two candidates: today's start (if still ahead) and the next school day's.
        for day in self._school_days[index:index + 2]:
            start = self.session_start_on(day)
            if start > after:
                return start
        raise CalendarHorizonError(
            f"{self._who()}: no school day after {after.astimezone(self._tz):%Y-%m-%d %H:%M %Z} "
            f"in the calendar (it covers academic years {', '.join(self.academic_years)})")

    def due_by(self, incident_recorded_at: datetime) -> datetime:
        """
        When the Key Adult must know of an incident recorded at `incident_recorded_at` (aware UTC).

        Operation Encompass's standard is "before the start of the next school
        day", which is this setting's next session start.  The notification is
        still delivered at once; this is the escalation deadline.
        """
        return self.next_session_start(incident_recorded_at)

    def first_day_back(self, at: datetime) -> date:
        """
        The school day on which a notification delivered at `at` must be surfaced (again).

        The day itself if `at`'s local date is a school day, else the next
        school day: a notification sent at a weekend or in a holiday waits in a
        monitored inbox, so it is surfaced once more when staff are back.
        Raises ValueError for a naive `at` and CalendarHorizonError past the horizon.
        """
        return self._school_day_on_or_after(self._local_date(at))

    def add_school_days(self, start: date, count: int) -> date:
        """
        The date `count` school days after `start` (`start` itself never counts).

        This is how "within 5 school days" is measured: a child-protection file
        for a move on `start` must reach the new setting by
        ``add_school_days(start, 5)``.  ``count == 0`` returns `start`.
        Raises ValueError for a negative count and CalendarHorizonError if the
        calendar ends first.
        """
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        self._within_horizon(start)
        if count == 0:
            return start
        index = bisect_right(self._school_days, start) + count - 1
        if index >= len(self._school_days):
            raise CalendarHorizonError(
                f"{self._who()}: the calendar ends before {count} school days after {start}")
        return self._school_days[index]

    def school_days_between(self, start: date, end: date) -> int:
        """
        How many school days fall after `start` and on or before `end`.

        The inverse of `add_school_days`: ``school_days_between(d, add_school_days(d, n)) == n``.
        Raises ValueError if `end` is before `start`, CalendarHorizonError outside the horizon.
        """
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        self._within_horizon(start)
        self._within_horizon(end)
        return bisect_right(self._school_days, end) - bisect_right(self._school_days, start)

    # -- helpers --------------------------------------------------------------------

    def _school_day_on_or_after(self, day: date) -> date:
        self._within_horizon(day)
        index = bisect_left(self._school_days, day)
        if index >= len(self._school_days):
            raise CalendarHorizonError(f"{self._who()}: no school day on or after {day} in the calendar "
                                       f"(it covers academic years {', '.join(self.academic_years)})")
        return self._school_days[index]

    def _local_date(self, moment: datetime) -> date:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("a moment must be timezone-aware: its local date would otherwise be a guess")
        day = moment.astimezone(self._tz).date()
        self._within_horizon(day)
        return day

    def _within_horizon(self, day: date) -> None:
        first, last = academic_horizon(self.academic_years)
        if not first <= day <= last:
            raise CalendarHorizonError(
                f"{self._who()}: {day} is outside the calendar's academic years "
                f"{', '.join(self.academic_years)} ({first}..{last})")

    def _who(self) -> str:
        if self.urn is None:
            return "partnership calendar"
        if self.resolution == "partnership-default":
            return f"setting {self.urn} (partnership defaults)"
        return f"setting {self.urn}"


@dataclass(frozen=True, kw_only=True)
class CalendarBook:
    """
    Every setting's calendar from one calendar file, and that file's version.

    `version` is ``sha256:<hex>`` over the file's bytes and the bank-holiday
    dates used (they come from the `holidays` package, so upgrading it can move
    a deadline): two books with the same version compute the same deadlines.
    """

    version: str
    source: str
    partnership: PartnershipCalendarDefaults
    default_calendar: SettingCalendar
    settings: Mapping[str, SettingCalendar]

    def for_setting(self, urn: str) -> SettingCalendar:
        """
        The calendar of the setting with `urn`.

        A URN the file does not list gets the partnership's defaults with
        ``resolution == "partnership-default"``, so a deadline computed from it
        can be recorded as an estimate rather than as the school's own calendar.
        """
        known = self.settings.get(urn)
        if known is not None:
            return known
        return self.default_calendar.model_copy(update={"urn": urn, "name": None,
                                                        "resolution": "partnership-default"})

    def urns(self) -> tuple[str, ...]:
        """The URNs of the settings the file lists, in file order."""
        return tuple(self.settings)

"""
Reading calendar files: the TOML format, its validation with every problem named, and the packaged sample.

Apart from `safebus.consumers.encompass.calendars`, which is the calendars
themselves and the school-day arithmetic on them, because a file's syntax,
its inheritance rules (a setting overlays the partnership's defaults) and its
error messages are about how calendars are written down, not about what a
school day is.  The result is a `CalendarBook` whose version is a digest of
the file and the bank holidays used.

Calendars are reference data in a TOML file (format below), loaded by
`load_calendars`.  A setting's calendar is its own values overlaid on the
partnership's defaults; an unknown URN gets the defaults, flagged as such (an
estimate, not a fact about that school).  `CalendarBook.version` is a digest of
everything a deadline depends on, so an audit record can say which calendar
computed it.

The file format (version 1)::

    format = 1

    [partnership]
    name = "..."                        # optional, for people reading the file
    nation = "england"                  # "england" | "wales": selects bank holidays
    timezone = "Europe/London"          # optional, the default shown
    academic_years = ["2025-26", "2026-27"]   # consecutive; the calendar's horizon
    session_start = "08:45"             # local wall-clock time of the first session
    terms = [ { name = "autumn 1", start = 2025-09-01, end = 2025-10-24 }, ... ]
    inset_days = [2025-09-01, ...]      # within terms; not school days for pupils
    closures = []                       # optional: partnership-wide closure days

    [[setting]]
    urn = "900102"                      # DfE URN, unique in the file
    name = "..."                        # optional
    nation = "wales"                    # optional; if it differs, terms and inset_days are required
    timezone = "Europe/London"          # optional
    session_start = "08:30"             # optional
    weekday_session_starts = { wednesday = "09:40" }   # optional, monday..friday
    terms = [...]                       # optional, replaces the partnership's terms
    inset_days = [...]                  # optional, replaces the partnership's INSET days
    extra_inset_days = [...]            # optional, added to the INSET days in force
    closures = [...]                    # optional, added to the partnership's closures

Terms are inclusive date ranges; a half term is the gap between two terms.
An academic year "2025-26" runs from 1 August 2025 to 31 July 2026 (the school
year begins with the first term after July), and every listed year needs at
least one term: the calendar then knows every school day from the horizon's
first day to its last, and refuses (`CalendarHorizonError`) to guess beyond it.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safebus.consumers.encompass.calendars import (
    NATIONS,
    CalendarBook,
    CalendarError,
    Nation,
    PartnershipCalendarDefaults,
    SessionTime,
    SettingCalendar,
    Term,
    TimeZoneName,
    Urn,
    WeekdaySessionStarts,
    academic_horizon,
    cross_field_problems,
    national_bank_holidays,
)
from safebus.jcs import canonical_json

__all__ = ["load_calendars", "parse_calendars", "sample_calendars"]

_SAMPLE: Final = "calendars_sample.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SettingEntry(_Strict):
    """One ``[[setting]]`` table as written: only what differs from the partnership."""

    urn: Urn
    name: str | None = None
    nation: Nation | None = None
    timezone: TimeZoneName | None = None
    session_start: SessionTime | None = None
    weekday_session_starts: WeekdaySessionStarts = WeekdaySessionStarts()
    terms: tuple[Term, ...] | None = Field(default=None, min_length=1)
    inset_days: tuple[date, ...] | None = None
    extra_inset_days: tuple[date, ...] = ()
    closures: tuple[date, ...] = ()


class _CalendarFile(_Strict):
    format: Literal[1]
    title: str | None = None
    partnership: dict[str, Any]
    setting: list[dict[str, Any]] = Field(default_factory=list)


def _describe(exc: ValidationError, inherited: frozenset[str] = frozenset()) -> list[str]:
    """Turn a pydantic error into "field: message" lines, marking problems with values a setting inherited."""
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        cause = (err.get("ctx") or {}).get("error")
        problems = cross_field_problems(cause)
        if problems is not None:
            lines.extend(f"{name}: {message}" + (" (inherited from [partnership]; give the setting its own)"
                                                 if name in inherited else "")
                         for name, message in problems)
            continue
        where = ".".join(str(p) for p in err["loc"]) or "(table)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {message}")
    return lines


def _version(raw: bytes, partnership: PartnershipCalendarDefaults) -> str:
    first, last = academic_horizon(partnership.academic_years)
    holidays_used = {nation: sorted(str(d) for d in national_bank_holidays(nation, first.year, last.year))
                     for nation in NATIONS}
    digest = hashlib.sha256(raw)
    digest.update(b"\0bank-holidays\0")
    digest.update(canonical_json(holidays_used))
    return f"sha256:{digest.hexdigest()}"


def _merge(entry: _SettingEntry, defaults: PartnershipCalendarDefaults, version: str) -> dict[str, Any]:
    """A setting's effective values: its own where given, the partnership's elsewhere."""
    inset = entry.inset_days if entry.inset_days is not None else defaults.inset_days
    return {
        "urn": entry.urn,
        "name": entry.name,
        "resolution": "setting",
        "calendar_version": version,
        "nation": entry.nation or defaults.nation,
        "timezone": entry.timezone or defaults.timezone,
        "academic_years": defaults.academic_years,
        "session_start": entry.session_start or defaults.session_start,
        "weekday_session_starts": entry.weekday_session_starts,
        "terms": entry.terms if entry.terms is not None else defaults.terms,
        "inset_days": (*inset, *entry.extra_inset_days),
        "closures": tuple(sorted({*defaults.closures, *entry.closures})),
    }


def parse_calendars(raw: bytes | str, *, source: str = "calendars.toml") -> CalendarBook:
    """
    Parse and validate a calendar file's content into a `CalendarBook`.

    Raises CalendarError listing every problem, each prefixed with where it is
    (``[partnership]`` or ``setting <urn>``) and the field: unknown keys, bad
    times, a term ending before it starts, overlapping terms, INSET days out of
    term, duplicate URNs, and a setting in another nation that did not give its
    own term dates.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    # (1): TOML syntax and the top-level shape.
    try:
        document = _CalendarFile.model_validate(tomllib.loads(data.decode("utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CalendarError(f"calendar file {source}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise CalendarError(f"calendar file {source} is invalid", _describe(exc)) from exc
    # (2): the partnership's defaults, which every setting builds on.
    try:
        defaults = PartnershipCalendarDefaults.model_validate(document.partnership)
    except ValidationError as exc:
        raise CalendarError(f"calendar file {source} is invalid",
                            [f"[partnership]: {line}" for line in _describe(exc)]) from exc
    version = _version(data, defaults)
    try:
        default_calendar = SettingCalendar.model_validate({**defaults.model_dump(), "calendar_version": version})
    except ValidationError as exc:
        # Settings are not judged against broken defaults: each would repeat the partnership's problems.
        raise CalendarError(f"calendar file {source} is invalid",
                            [f"[partnership]: {line}" for line in _describe(exc)]) from exc
    problems: list[str] = []
    # (3): each setting, overlaid on the defaults.
    settings: dict[str, SettingCalendar] = {}
    for position, table in enumerate(document.setting, start=1):
        urn = table.get("urn")
        where = f"setting {urn}" if isinstance(urn, str) else f"setting #{position}"
        try:
            entry = _SettingEntry.model_validate(table)
        except ValidationError as exc:
            problems.extend(f"{where}: {line}" for line in _describe(exc))
            continue
        if entry.urn in settings:
            problems.append(f"{where}: urn: listed more than once")
            continue
        if entry.nation not in (None, defaults.nation):
            missing = [name for name in ("terms", "inset_days") if getattr(entry, name) is None]
            if missing:
                problems.append(f"{where}: {', '.join(missing)}: required because the setting is in "
                                f"{entry.nation.title()}, not {defaults.nation.title()} (term dates differ)")
                continue
        extra_twice = set(entry.extra_inset_days) & set(
            entry.inset_days if entry.inset_days is not None else defaults.inset_days)
        if extra_twice:
            problems.append(f"{where}: extra_inset_days: {', '.join(map(str, sorted(extra_twice)))} "
                            f"already an INSET day")
            continue
        inherited = frozenset({"terms", "inset_days"} - entry.model_fields_set)
        try:
            settings[entry.urn] = SettingCalendar.model_validate(_merge(entry, defaults, version))
        except ValidationError as exc:
            problems.extend(f"{where}: {line}" for line in _describe(exc, inherited))
    if problems:
        raise CalendarError(f"calendar file {source} is invalid", problems)
    return CalendarBook(version=version, source=source, partnership=defaults, default_calendar=default_calendar,
                        settings=MappingProxyType(settings))


def load_calendars(path: str | os.PathLike[str]) -> CalendarBook:
    """
    Load and validate the calendar file at `path`.

    Raises CalendarError if it cannot be read or is invalid (see `parse_calendars`).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise CalendarError(f"calendar file {file}: cannot be read: {exc.strerror or exc}") from exc
    return parse_calendars(raw, source=str(file))


def sample_calendars() -> CalendarBook:
    """
    The synthetic Northdale partnership's calendars for 2025-26 and 2026-27 (packaged ``calendars_sample.toml``).

    For the demo and tests only: the dates are plausible, not any real authority's.
    """
    try:
        raw = resources.files("safebus.consumers.encompass").joinpath(_SAMPLE).read_bytes()
    except OSError as exc:
        raise CalendarError(f"the sample calendar safebus/{_SAMPLE} is not installed with the package") from exc
    return parse_calendars(raw, source=f"safebus/{_SAMPLE}")

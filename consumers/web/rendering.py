"""
How the pages look: the Jinja2 environment with its display filters, and the static files.

Kept apart from the site machinery (`safebus.consumers.web.pages`) because it
is presentation only: which templates, how a moment, a date or a span reads in
the reader's time zone.  A test can render a template exactly as the
dashboards do without building an app.  Autoescaping is on and
`StrictUndefined` makes a misspelt variable an error rather than a blank.
"""

from __future__ import annotations

import mimetypes
from datetime import date, datetime, timedelta
from importlib.resources import files
from zoneinfo import ZoneInfo

import jinja2

__all__ = ["static_files", "template_environment"]


def template_environment(display_zone: ZoneInfo) -> jinja2.Environment:
    """The pages' templates from the installed package, with the `when`, `day` and `duration` filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("safebus.consumers.web", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )

    def when(moment: datetime | None) -> str:
        """A moment in the reader's time zone, e.g. ``Wed 18 Nov 2026, 21:30 GMT``."""
        if moment is None:
            return ""
        local = moment.astimezone(display_zone)
        return f"{local:%a} {local.day} {local:%b %Y, %H:%M %Z}"

    def day(value: date) -> str:
        """A calendar date, e.g. ``4 March 2016``."""
        return f"{value.day} {value:%B %Y}"

    def duration(value: timedelta) -> str:
        """A span a reader takes in at a glance, e.g. ``5 s``, ``3 min 05 s``, ``2 h 05 min``, ``1 d 3 h``."""
        seconds = max(0, round(value.total_seconds()))
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        if days:
            return f"{days} d {hours} h"
        if hours:
            return f"{hours} h {minutes:02d} min"
        return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"

    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["duration"] = duration
    return env


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of the package's ``static/`` folder by name: its bytes and content type."""
    folder = files("safebus.consumers.web").joinpath("static")
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            found[entry.name] = (entry.read_bytes(), kind)
    return found

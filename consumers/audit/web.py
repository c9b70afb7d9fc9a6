"""
The information-governance dashboard: the audit trail in a browser, every page view itself audited.

Pages (server-rendered, no script; sessions, CSRF, headers and sign-in come
from `safebus.consumers.web.pages`):

- ``/search``: facts by subject token, agency, recipient, agreement, outcome,
  fact type and date (the bare form shows no records: nothing is looked at
  without a filter); information-governance officers also get a form to
  find a person by name and date of birth (``POST /subject``);
- ``/subject/{token}``: a person's chronology (decisions with agreement,
  clause, lawful basis, consent and fields released; deliveries,
  acknowledgements, escalations, erasure) and *who viewed this record*, with
  CSV and JSON exports;
- ``/flows``: decisions between agencies as a table and an SVG diagram;
- ``/statistics``: a month's Operation Encompass figures as a table and an
  SVG chart, with CSV and SVG downloads;
- ``/integrity``: the latest checkpoint and whether the log verifies now,
  naming the leaf index of anything wrong.

Why it is built this way:

- **Two roles.**  ``information-governance`` may turn a name into a token
  and read and export chronologies; ``auditor`` sees tokens, flows,
  statistics and integrity only.  A chronology URL or the name search opened
  by an auditor is a 403: the role boundary is enforced per route, not by
  hiding links.
- **Every page view is an `AuditViewed` fact** recorded through the injected
  `record_view` before the page is sent (`AuditedReader`); if it cannot be
  recorded the officer gets an error page, not the data.
- **Names never travel in URLs, logs or the audit trail.**  The name search
  is a POST; the server computes the token, remembers the name the officer
  typed (in memory, for that officer only, for the session's lifetime) and
  redirects to ``/subject/{token}``.  The chronology heading and exports show
  that name back to that officer; anyone else, or the same officer after the
  memory lapses, sees the token.
- **The integrity page only reads** (`check_integrity`): it verifies
  receipts, the tree and checkpoints against the ledger's key, and never
  signs a checkpoint over data it has not verified.
- **Blocking work runs in threads**: SQLite reads, scrypt, the verifier and
  `record_view` (which may wait for a broker's acknowledgement).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from markupsafe import Markup

from safebus.consumers.audit.charts import flows_svg, statistics_svg
from safebus.consumers.audit.facts import AUDIT_PRODUCER
from safebus.consumers.audit.ledger import AuditLedger
from safebus.consumers.audit.officers import Officer, OfficerRole, Officers
from safebus.consumers.audit.projection import MAX_LIMIT, AuditProjection, Filters, QueryError, month_bounds
from safebus.consumers.audit.reports import AuditedReader, IdentifyingDetails, RecordView, Viewer
from safebus.consumers.web.pages import Clock, Principal, create_app, current_principal, render, require_login
from safebus.logs import get_logger
from safebus.pseudonyms import Tokeniser
from safebus.schemas.decision import Outcome

__all__ = ["AuditDashboard"]

_IG = (OfficerRole.INFORMATION_GOVERNANCE.value,)
_ANY = (OfficerRole.INFORMATION_GOVERNANCE.value, OfficerRole.AUDITOR.value)
_TOKEN = re.compile(r"^subj_[0-9a-f]{32}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,99}$")
_FILTERS = ("subject", "agency", "recipient", "agreement", "outcome", "fact_type", "since", "until")
_SESSION_TTL = timedelta(hours=8)
_REMEMBERED_PER_OFFICER = 50
"""Names one officer's session keeps: enough for a day's requests, bounded so memory cannot grow without end."""
_MAX_NAME = 100

_log = get_logger("consumers.audit_web")


@dataclass(frozen=True)
class _Remembered:
    label: str
    until: datetime


class _Names:
    """The names officers typed, per officer and token, in memory only, for a session's lifetime."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_officer: dict[str, dict[str, _Remembered]] = {}

    def remember(self, user_id: str, token: str, label: str) -> None:
        with self._lock:
            mine = self._by_officer.setdefault(user_id, {})
            mine.pop(token, None)
            mine[token] = _Remembered(label, self._clock() + _SESSION_TTL)
            while len(mine) > _REMEMBERED_PER_OFFICER:
                del mine[next(iter(mine))]

    def of(self, user_id: str) -> dict[str, str]:
        now = self._clock()
        with self._lock:
            mine = self._by_officer.get(user_id, {})
            for token in [t for t, r in mine.items() if r.until <= now]:
                del mine[token]
            return {t: r.label for t, r in mine.items()}


class _BadRequest(Exception):
    """A form or query value the page cannot use; shown to the officer, never logged with its value."""


def _viewer(principal: Principal) -> Viewer:
    return Viewer(user_id=principal.user_id, role=sorted(principal.roles)[0])


def _is_ig(principal: Principal) -> bool:
    return OfficerRole.INFORMATION_GOVERNANCE.value in principal.roles


class AuditDashboard:
    """The information-governance dashboard over a projection and its ledger; `app()` builds the application."""

    def __init__(
        self,
        *,
        projection: AuditProjection,
        ledger: AuditLedger,
        tokeniser: Tokeniser,
        officers: Officers,
        record_view: RecordView,
        clock: Clock,
        secret: bytes,
        secure_cookies: bool = True,
        producer: str = AUDIT_PRODUCER,
        zone: str = "Europe/London",
        web_state: Path | None = None,
    ) -> None:
        """
        Serve the audit trail in `projection` (integrity from `ledger`) to the officers in `officers`.

        Every page view goes to `record_view` as an `AuditViewed` fact from
        `producer`.  `tokeniser` turns a name and date of birth into a token;
        `secret` (at least 32 bytes) signs sessions.  Dates are shown and
        months counted in `zone`.  Sessions and the sign-in throttle live in
        `web_state` (where the officer commands end sessions), or in memory.
        """
        self.projection = projection
        self.ledger = ledger
        self.tokeniser = tokeniser
        self.officers = officers
        self.clock = clock
        self.zone = ZoneInfo(zone)
        self.reader = AuditedReader(projection, record_view=record_view, clock=clock, channel="dashboard",
                                    producer=producer, zone=zone)
        self._secret = secret
        self._secure_cookies = secure_cookies
        self._web_state = web_state
        self._names = _Names(clock)

    # ------------------------------------------------------------------ accounts

    @staticmethod
    def _principal(officer: Officer | None) -> Principal | None:
        if officer is None:
            return None
        return Principal(user_id=officer.user_id, display_name=officer.display_name,
                         roles=frozenset({officer.role.value}), scope="partnership",
                         session_version=officer.credential_version)

    def _authenticate(self, user_id: str, password: str) -> Principal | None:
        return self._principal(self.officers.authenticate(user_id, password))

    def _resolve(self, user_id: str) -> Principal | None:
        return self._principal(self.officers.get(user_id))

    # ------------------------------------------------------------------ the app

    def app(self) -> web.Application:
        """The aiohttp application: sign-in and the dashboard's pages."""
        app = create_app(title="Audit trail", secret=self._secret, authenticate=self._authenticate,
                         resolve=self._resolve, clock=self.clock, home="/search", user_label="Officer ID",
                         secure_cookies=self._secure_cookies, session_ttl=_SESSION_TTL, state_dir=self._web_state,
                         footer="Every page you open here is recorded in the audit log, with your officer ID.")
        anyone, ig_only = require_login(roles=_ANY), require_login(roles=_IG)
        app.router.add_get("/", anyone(self._home))
        app.router.add_get("/search", anyone(self._search))
        app.router.add_post("/subject", ig_only(self._find_person))
        app.router.add_get("/subject/{token}", ig_only(self._chronology))
        app.router.add_get("/subject/{token}/chronology.csv", ig_only(self._chronology_csv))
        app.router.add_get("/subject/{token}/chronology.json", ig_only(self._chronology_json))
        app.router.add_get("/flows", anyone(self._flows))
        app.router.add_get("/statistics", anyone(self._statistics))
        app.router.add_get("/statistics.csv", anyone(self._statistics_csv))
        app.router.add_get("/statistics.svg", anyone(self._statistics_svg))
        app.router.add_get("/integrity", anyone(self._integrity))
        return app

    # ------------------------------------------------------------------ parsing

    def _day(self, query: Mapping[str, str], name: str, *, end: bool = False) -> datetime | None:
        """A date field as the first instant of that day (or of the next, for an inclusive end) in the zone."""
        text = query.get(name, "").strip()
        if not text:
            return None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _BadRequest(f"Enter the {name.replace('_', ' ')} date as YYYY-MM-DD.") from None
        if end:
            day += timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=self.zone)

    def _filters(self, query: Mapping[str, str]) -> Filters:
        values: dict[str, Any] = {}
        subject = query.get("subject", "").strip()
        if subject:
            if not _TOKEN.match(subject):
                raise _BadRequest("A subject token looks like subj_ followed by 32 letters and digits.")
            values["subject"] = subject
        for name in ("agency", "recipient", "agreement", "fact_type"):
            value = query.get(name, "").strip()
            if value:
                if not _ID.match(value):
                    raise _BadRequest(f"The {name.replace('_', ' ')} is an id in lower case, like northdale-police.")
                values[name] = value
        outcome = query.get("outcome", "").strip()
        if outcome:
            values["outcome"] = outcome
        values["since"] = self._day(query, "since")
        values["until"] = self._day(query, "until", end=True)
        try:
            values["limit"] = int(query.get("limit", "").strip() or 100)
            return Filters(**values)
        except (ValueError, QueryError):
            raise _BadRequest(f"Choose a known outcome and a limit from 1 to {MAX_LIMIT}.") from None

    def _month(self, query: Mapping[str, str]) -> str:
        month = query.get("month", "").strip() or f"{self.clock().astimezone(self.zone):%Y-%m}"
        try:
            month_bounds(month)
        except QueryError:
            raise _BadRequest("Enter the month as YYYY-MM.") from None
        return month

    # ------------------------------------------------------------------ pages

    async def _home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/search")

    async def _search(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        viewer = _viewer(principal)
        query = dict(request.query)
        error, status, rows = None, 200, []
        searched = any(query.get(name, "").strip() for name in _FILTERS)
        try:
            filters = self._filters(query)
        except _BadRequest as exc:
            error, status = str(exc), 400
            await asyncio.to_thread(self.reader.record, viewer, "search", {"refused": "invalid-filters"}, results=0)
        else:
            if searched:
                rows = await asyncio.to_thread(self.reader.query, viewer, filters, view="search")
            else:  # the bare form shows nobody's records: nothing is looked at without a reason to look
                await asyncio.to_thread(self.reader.record, viewer, "search", {}, results=0)
        return render(request, "audit/search.html", status=status, nav="search", error=error, query=query,
                      rows=rows, searched=searched, outcomes=[o.value for o in Outcome],
                      can_identify=_is_ig(principal), max_limit=MAX_LIMIT)

    async def _find_person(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        form = await request.post()
        first, surname, born = (form.get(k) for k in ("first_name", "surname", "date_of_birth"))
        try:
            if not all(isinstance(v, str) and v.strip() and len(v) <= _MAX_NAME for v in (first, surname, born)):
                raise _BadRequest("Enter the person's first name, surname and date of birth.")
            try:
                dob = date.fromisoformat(str(born).strip())
            except ValueError:
                raise _BadRequest("Enter the date of birth as YYYY-MM-DD.") from None
        except _BadRequest as exc:
            await asyncio.to_thread(self.reader.record, _viewer(principal), "find-person",
                                    {"refused": "invalid-details"}, results=0)
            return render(request, "audit/search.html", status=400, nav="search", error=str(exc), query={},
                          rows=[], searched=False, outcomes=[o.value for o in Outcome], can_identify=True,
                          max_limit=MAX_LIMIT)
        details = IdentifyingDetails(first_name=str(first).strip(), surname=str(surname).strip(), date_of_birth=dob)
        token = details.token(self.tokeniser)
        self._names.remember(principal.user_id, token, details.label)
        _log.info("audit_web.person_identified", user_id=principal.user_id)  # never the token with the details
        raise web.HTTPSeeOther(f"/subject/{token}")

    def _token(self, request: web.Request) -> str:
        token = request.match_info["token"]
        if not _TOKEN.match(token):
            raise web.HTTPNotFound
        return token

    async def _chronology(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        token = self._token(request)
        names = self._names.of(principal.user_id)
        identified = "name-and-date-of-birth" if token in names else "token"
        found = await asyncio.to_thread(self.reader.chronology, _viewer(principal), token, identified_by=identified)
        follow_ups = [e for e in found.entries if e.kind != "decision"]
        label = names.get(token)
        return render(request, "audit/chronology.html", nav="search", token=token, label=label,
                      names={token: label} if label else {}, decisions=found.decisions, follow_ups=follow_ups,
                      views=found.views)

    async def _chronology_csv(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        token = self._token(request)
        names = self._names.of(principal.user_id)
        shown = {token: names[token]} if token in names else {}
        text = await asyncio.to_thread(self.reader.chronology_csv, _viewer(principal), token, names=shown,
                                       identified_by="name-and-date-of-birth" if shown else "token")
        return _download(text, "text/csv", f"chronology-{token}.csv")

    async def _chronology_json(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        token = self._token(request)
        names = self._names.of(principal.user_id)
        shown = {token: names[token]} if token in names else {}
        text = await asyncio.to_thread(self.reader.chronology_json, _viewer(principal), token, names=shown,
                                       identified_by="name-and-date-of-birth" if shown else "token")
        return _download(text, "application/json", f"chronology-{token}.json")

    async def _flows(self, request: web.Request) -> web.StreamResponse:
        viewer = _viewer(current_principal(request))
        query = dict(request.query)
        try:
            since, until = self._day(query, "since"), self._day(query, "until", end=True)
        except _BadRequest as exc:
            await asyncio.to_thread(self.reader.record, viewer, "flows", {"refused": "invalid-dates"}, results=0)
            return render(request, "audit/flows.html", status=400, nav="flows", error=str(exc), query=query,
                          flows=[], diagram=None)
        found = await asyncio.to_thread(self.reader.flows, viewer, since=since, until=until)
        return render(request, "audit/flows.html", nav="flows", error=None, query=query, flows=found,
                      diagram=Markup(flows_svg(found)))  # noqa: S704 - flows_svg escapes every text it writes

    async def _statistics(self, request: web.Request) -> web.StreamResponse:
        viewer = _viewer(current_principal(request))
        try:
            month = self._month(request.query)
        except _BadRequest as exc:
            await asyncio.to_thread(self.reader.record, viewer, "statistics", {"refused": "invalid-month"}, results=0)
            return render(request, "audit/statistics.html", status=400, nav="statistics", error=str(exc),
                          month="", stats=None, chart=None)
        stats = await asyncio.to_thread(self.reader.monthly_statistics, viewer, month)
        return render(request, "audit/statistics.html", nav="statistics", error=None, month=month, stats=stats,
                      chart=Markup(statistics_svg(stats)))  # noqa: S704 - statistics_svg escapes every text

    async def _statistics_csv(self, request: web.Request) -> web.StreamResponse:
        viewer = _viewer(current_principal(request))
        try:
            month = self._month(request.query)
        except _BadRequest:
            raise web.HTTPBadRequest from None
        text = await asyncio.to_thread(self.reader.statistics_csv, viewer, month)
        return _download(text, "text/csv", f"audit-statistics-{month}.csv")

    async def _statistics_svg(self, request: web.Request) -> web.StreamResponse:
        viewer = _viewer(current_principal(request))
        try:
            month = self._month(request.query)
        except _BadRequest:
            raise web.HTTPBadRequest from None
        text = await asyncio.to_thread(self.reader.statistics_svg, viewer, month)
        return _download(text, "image/svg+xml", f"audit-statistics-{month}.svg")

    async def _integrity(self, request: web.Request) -> web.StreamResponse:
        viewer = _viewer(current_principal(request))
        status = await asyncio.to_thread(self.reader.integrity, viewer, self.ledger)
        return render(request, "audit/integrity.html", nav="integrity", integrity=status)


def _download(text: str, kind: str, filename: str) -> web.Response:
    return web.Response(text=text, content_type=kind, charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


"""
Information-governance officers and auditors using the audit dashboard in a real (headless) browser.

The dashboard is the real app over a real ledger and projection holding the
synthetic November of `tests.unit.consumers.audit.test_projection`; views are recorded
by `LedgerViewSink`, which appends them to that ledger and re-projects, so a
view recorded on one page load is visible on the next, as it would be once
the sequencer has read it from the audit topic.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from safebus.consumers.audit.ledger import AuditLedger
from safebus.consumers.audit.officers import OfficerRole, Officers
from safebus.consumers.audit.projection import AuditProjection
from safebus.consumers.audit.reports import LedgerViewSink
from safebus.consumers.audit.web import AuditDashboard
from safebus.consumers.web.serving import serve_in_thread
from tests.unit.consumers.audit.test_projection import (
    FACTS,
    IDS_INDEX,
    IVY,
    NOW,
    PEOPLE,
    RHEA,
    TOKEN,
    TOKENISER,
    append,
    d,
    new_ledger,
)

PASSWORD = "synthetic officer password"
IG, AUDITOR = "ig-officer-01", "auditor-07"
VIEWPORT = {"width": 1024, "height": 900}


@dataclass
class Dashboard:
    """The running dashboard and what the test can see behind it."""

    base_url: str
    ledger: AuditLedger
    ledger_path: Path

    def leaves_text(self) -> str:
        """Every leaf of the ledger, as text."""
        return "".join(leaf.body.decode() for leaf in self.ledger.leaves())

    def views(self) -> list[tuple[str, str]]:
        """(viewer, view) of every `audit.viewed` leaf, in log order."""
        return [(f["viewer"], f["view"]) for f in (json.loads(leaf.body) for leaf in self.ledger.leaves())
                if f["event_type"] == "audit.viewed"]


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """The synthetic log in a ledger, projected, with one information-governance officer and one auditor."""
    ledger_path = tmp_path / "ledger.sqlite"
    ledger = new_ledger(ledger_path)
    append(ledger, FACTS)
    ledger.make_checkpoint(now=NOW)
    projection = AuditProjection(tmp_path / "projection.sqlite")
    projection.catch_up(ledger)
    officers = Officers(tmp_path / "officers.json")
    officers.add(IG, role=OfficerRole.INFORMATION_GOVERNANCE, display_name="IG officer (synthetic)", password=PASSWORD)
    officers.add(AUDITOR, role=OfficerRole.AUDITOR, display_name="Auditor (synthetic)", password=PASSWORD)
    app = AuditDashboard(projection=projection, ledger=ledger, tokeniser=TOKENISER, officers=officers,
                         record_view=LedgerViewSink(ledger, projection, clock=lambda: NOW), clock=lambda: NOW,
                         secret=secrets.token_bytes(32), secure_cookies=False)
    served = serve_in_thread(app.app())
    try:
        yield Dashboard(base_url=served.base_url, ledger=ledger, ledger_path=ledger_path)
    finally:
        served.stop()
        projection.close()
        ledger.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A tab in a fresh browser profile (no cookies) pointed at the dashboard."""
    context: BrowserContext = browser.new_context(viewport=VIEWPORT, base_url=dashboard.base_url)  # type: ignore[arg-type]
    context.set_default_timeout(5_000)  # local pages answer in milliseconds; fail fast
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in(page: Page, user_id: str) -> None:
    page.goto("/login")
    page.fill("#user_id", user_id)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")


def _path(page: Page) -> str:
    parts = urlsplit(page.url)
    return unquote(f"{parts.path}?{parts.query}" if parts.query else parts.path)


def _png(path: Path) -> bytes:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (VIEWPORT["width"], VIEWPORT["height"])
    return data


def _no_personal_details(text: str) -> None:
    for person in PEOPLE:
        for detail in (person.first_name, person.surname, person.date_of_birth.isoformat()):
            assert detail not in text, detail


class TestInformationGovernanceOfficer:
    def test_finds_a_person_by_name_and_sees_their_record_and_who_viewed_it(
            self, page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
        """
        Name and date of birth lead to the chronology (a withheld and a shared decision with their clauses);
        reloading lists the officer's own earlier view; the log holds the views but never the name.
        """
        page.goto("/")
        assert _path(page) == "/login?next=/"
        login_shot = tmp_path / "login.png"
        page.screenshot(path=str(login_shot))

        _sign_in(page, IG)
        assert _path(page) == "/search"
        page.fill("#first_name", "Rhea")
        page.fill("#surname", "Calloway")
        page.fill("#date_of_birth", "1990-02-14")
        page.click("#find-person button[type=submit]")

        token = TOKEN[RHEA]
        assert _path(page) == f"/subject/{token}"  # the name went in a POST body, never the URL
        assert page.locator("h1").inner_text() == "Rhea Calloway (born 1990-02-14)"
        withheld = page.locator("#decisions tbody tr[data-outcome='withheld']")
        shared = page.locator("#decisions tbody tr[data-outcome='shared']")
        assert withheld.count() == shared.count() == 1
        assert withheld.locator(".clause").inner_text() == "4 no-consent"
        assert "Consent to an IDVA referral was not given." in withheld.inner_text()
        assert "Consent: refused" in withheld.inner_text()
        assert shared.locator(".clause").inner_text() == "1 visible-high-risk"
        assert "northdale-marac" in shared.inner_text()
        assert "police_reference, risk_level" in shared.inner_text()
        assert page.locator("#no-views").is_visible()
        assert TOKEN[IVY] in page.content()  # a co-subject of the MARAC delivery stays a token
        assert "Ivy" not in page.content()
        chronology_shot = tmp_path / "chronology.png"
        page.screenshot(path=str(chronology_shot), full_page=False)

        page.reload()
        views = page.locator("#views tbody tr")
        assert views.count() == 1
        assert [views.locator("td").nth(i).inner_text() for i in (1, 2, 3, 4)] == [
            IG, "information-governance", "dashboard/chronology", "3"]

        export = page.request.get(f"/subject/{token}/chronology.csv")
        assert export.status == 200
        assert export.headers["content-disposition"] == f'attachment; filename="chronology-{token}.csv"'
        assert "Rhea Calloway (born 1990-02-14)" in export.text()

        assert _png(login_shot) != _png(chronology_shot)
        assert dashboard.views() == [(IG, "dashboard/search"), (IG, "dashboard/chronology"),
                                     (IG, "dashboard/chronology"), (IG, "dashboard/chronology-export-csv")]
        _no_personal_details(dashboard.leaves_text())


class TestAuditor:
    def test_cannot_open_a_chronology_but_sees_flows_statistics_and_integrity(
            self, page: Page, dashboard: Dashboard) -> None:
        """An auditor gets 403 for the name search and a chronology, and reads tokens, flows, figures, integrity."""
        _sign_in(page, AUDITOR)
        assert _path(page) == "/search"
        assert page.locator("#find-person").count() == 0
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
        refused = page.request.post("/subject", form={"csrf_token": csrf, "first_name": "Rhea", "surname": "Calloway",
                                                      "date_of_birth": "1990-02-14"})
        assert refused.status == 403
        response = page.goto(f"/subject/{TOKEN[RHEA]}")
        assert response is not None
        assert response.status == 403
        assert page.request.get(f"/subject/{TOKEN[RHEA]}/chronology.json").status == 403

        page.goto(f"/search?subject={TOKEN[RHEA]}")
        assert page.locator("#results tbody tr").count() == 3
        assert page.locator("#results a").count() == 0  # tokens, not links to a chronology

        page.goto("/flows?since=2026-11-01&until=2026-11-30")
        assert page.locator("#flows tbody tr").count() == 8
        assert page.locator("#flows-diagram svg title").first.text_content() == "Flows between agencies"

        page.goto("/statistics?month=2026-11")
        assert page.locator("#acknowledged-on-time").inner_text().startswith("1 on time, 2 late")
        assert page.locator("#police-on-time").inner_text().startswith("0 on time, 0 late, unknown for 4")
        assert "(0)" in page.locator("#state-conflicts caption").inner_text()
        assert page.locator("#statistics-chart svg title").first.text_content() == "Audit statistics for 2026-11"

        page.goto("/integrity")
        assert page.locator("#integrity-status").inner_text().startswith("Verified.")
        assert page.locator("#checkpoint").inner_text().count(f"{len(FACTS)} leaves, signed Mon 30 Nov 2026") == 1
        _no_personal_details(page.content())
        assert [v for _, v in dashboard.views()] == [
            "dashboard/search", "dashboard/search", "dashboard/flows", "dashboard/statistics", "dashboard/integrity"]


class TestIntegrity:
    def test_a_changed_byte_in_the_ledger_file_is_reported_with_its_leaf_index(
            self, page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
        """After one byte of one leaf's body changes in the SQLite file, the page says not verified, naming it."""
        _sign_in(page, AUDITOR)
        page.goto("/integrity")
        assert page.locator("#integrity-status").inner_text().startswith("Verified.")

        index = IDS_INDEX[d("O1")]
        with sqlite3.connect(dashboard.ledger_path) as db:
            (body,) = db.execute("SELECT body FROM leaves WHERE idx = ?", (index,)).fetchone()
            at = bytes(body).index(b"18 or over") + 1
            changed = bytes(body)[:at] + b"9" + bytes(body)[at + 1:]  # one byte: "18 or over" becomes "19 or over"
            db.execute("UPDATE leaves SET body = ? WHERE idx = ?", (changed, index))

        page.reload()
        status = page.locator("#integrity-status").inner_text()
        assert status.startswith("Not verified.")
        assert f"the first affected leaf is leaf {index}" in status
        problems = page.locator(f"#problems li[data-leaf-index='{index}']").all_inner_texts()
        assert f"leaf {index}: altered or inserted: the leaf does not match the log's receipt" in problems
        assert any("do not hash to the signed checkpoint's root" in p for p in problems)
        shot = tmp_path / "integrity.png"
        page.screenshot(path=str(shot))
        _png(shot)

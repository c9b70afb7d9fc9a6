"""
A Key Adult confirms, in a real (headless) browser, that a moved child's file was sent on.

The deadline monitor knows the move only by the child's token; the inbox names
the child from its own alerts, and the confirmation becomes an audit fact.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from safebus.consumers.inbox.key_adults import KeyAdults, ensure_synthetic_key_adults
from safebus.consumers.inbox.store import Arrival, InboxStore
from safebus.consumers.inbox.web import PendingTransfer, SchoolInbox
from safebus.consumers.web.serving import serve_in_thread
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import FileTransferConfirmed
from safebus.schemas.encompass import EncompassNotification
from tests.browser.test_school_inbox import PASSWORD, SETTINGS, VIEWPORT, _open, _png_size
from tests.conftest import FIXED_NOW

TOKEN = "subj_5e1f0c2d3b4a59687766554433221100"
TRANSFER = "7a0e4f1c-2b3d-5e6f-8a9b-0c1d2e3f4a5b"


@dataclass
class Running:
    """The inbox with one pending transfer at Hollowmere, and the confirmations it handed over."""

    base_url: str
    pending: list[PendingTransfer]
    confirmed: list[FileTransferConfirmed]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """Hollowmere holds one alert about Ivy (token TOKEN), who has moved to Quillon Street."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    notification = EncompassNotification(
        **event_metadata(EncompassNotification, producer="safebus-router", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW, subjects=(TOKEN,)),
        notification_id="0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1b01", setting_urn="900101", child_first_name="Ivy",
        child_surname="Garside", child_date_of_birth=date(2016, 3, 4), police_reference="NDP-2026-000123",
        incident_at=FIXED_NOW - timedelta(hours=3), child_present=True,
    )
    store.store(Arrival(notification_id=notification.notification_id, setting_urn="900101",
                        envelope=notification.model_dump_json()[::-1].encode()), received_at=FIXED_NOW)
    key_adults = KeyAdults(tmp_path / "key-adults.json")
    ensure_synthetic_key_adults(key_adults, [SETTINGS["900101"], SETTINGS["900105"]], password=PASSWORD)
    pending = [PendingTransfer(transfer_id=TRANSFER, subject=TOKEN, new_setting_urn="900103",
                               due_by=FIXED_NOW + timedelta(days=8))]
    confirmed: list[FileTransferConfirmed] = []

    def confirm(fact: FileTransferConfirmed) -> None:
        confirmed.append(fact)

    app = SchoolInbox(store=store, opener=_open, key_adults=key_adults, settings=SETTINGS, clock=lambda: FIXED_NOW,
                      due_by=lambda _nid: None, on_acknowledged=lambda _event: None, secret=secrets.token_bytes(32),
                      transfers=lambda urn: [t for t in pending if urn == "900101"], on_transfer_confirmed=confirm)
    served = serve_in_thread(app.app())
    try:
        yield Running(base_url=served.base_url, pending=pending, confirmed=confirmed)
    finally:
        served.stop()
        store.close()


def _sign_in(page: Page, staff_id: str) -> None:
    page.goto("/login")
    page.fill("#user_id", staff_id)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")


def test_the_old_setting_sees_who_moved_and_confirms_the_file_was_sent(browser: Browser, running: Running,
                                                                      tmp_path: Path) -> None:
    """Hollowmere's Key Adult sees Ivy's move and deadline, confirms once, and the confirmation is audited."""
    context = browser.new_context(viewport=VIEWPORT, base_url=running.base_url)
    page = context.new_page()
    try:
        _sign_in(page, "900101-ka")
        page.click("#transfers-link")
        row = page.locator("#transfers tbody tr")
        assert row.count() == 1
        text = row.inner_text()
        assert "Ivy Garside (born 2016-03-04)" in text
        assert "Quillon Street Infant School" in text
        before = tmp_path / "before.png"
        page.screenshot(path=str(before))
        page.click(f"#confirm-{TRANSFER}")
        assert "CONFIRMED SENT" in page.locator("#transfers tbody tr").inner_text().upper()
        after = tmp_path / "after.png"
        page.screenshot(path=str(after))
        assert _png_size(before) == _png_size(after) == (VIEWPORT["width"], VIEWPORT["height"])
        assert before.read_bytes() != after.read_bytes()
        [fact] = running.confirmed
        assert (fact.transfer_id, fact.setting_urn, fact.staff_id, fact.subjects) == (
            TRANSFER, "900101", "900101-ka", (TOKEN,))
        assert "Ivy" not in fact.model_dump_json()
        page.reload()
        assert len(running.confirmed) == 1  # reloading does not confirm again
    finally:
        context.close()


def test_another_setting_cannot_see_or_confirm_the_transfer(browser: Browser, running: Running) -> None:
    """Wrenfield's Key Adult sees no transfer, and posting a confirmation for Hollowmere's is refused (404)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=running.base_url)
    page = context.new_page()
    try:
        _sign_in(page, "900105-ka")
        page.goto("/transfers")
        assert page.locator("#no-transfers").count() == 1
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")  # the sign-out form's
        response = page.request.post(f"/transfers/{TRANSFER}/confirm", form={"csrf_token": token or ""},
                                     max_redirects=0)
        assert response.status == 404
        assert running.confirmed == []
    finally:
        context.close()

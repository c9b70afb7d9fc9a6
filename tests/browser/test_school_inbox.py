"""
A Key Adult using the school inbox in a real (headless) browser.

The inbox is the real app over a real `InboxStore`, served on loopback; the
envelopes are stand-ins (the notification's JSON reversed, opened by reversing
it back, as in the store's unit tests), so no keys and no Kafka are needed.
The acknowledgement callback records the events it is handed.
"""

from __future__ import annotations

import secrets
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, ViewportSize

from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdults, ensure_synthetic_key_adults
from safebus.consumers.inbox.store import Arrival, InboxStore
from safebus.consumers.inbox.web import SchoolInbox, acknowledgement_event_id
from safebus.consumers.web.serving import serve_in_thread
from safebus.producers.synthetic import SCHOOLS
from safebus.schemas._base import event_metadata
from safebus.schemas.encompass import Acknowledger, EncompassAcknowledged, EncompassNotification, KeyAdultRole
from tests.conftest import FIXED_NOW

PASSWORD = "synthetic demo password"
VIEWPORT: ViewportSize = {"width": 1024, "height": 768}
SETTINGS = {urn: EducationSetting(urn=urn, agency_id=agency_id, name=name) for agency_id, urn, name, _ in SCHOOLS}
HOLLOWMERE_KA, HOLLOWMERE_DEPUTY, WRENFIELD_KA = "900101-ka", "900101-deputy", "900105-ka"

IVY_NEW = "0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1a01"
IVY_OLD = "0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1a02"
NOAH = "0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1a03"
REUBEN_AT_WRENFIELD = "0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1a04"
UNKNOWN = "0b0c6f1e-51a3-5c55-9a1e-6f0e2d7c1aff"

ENCOMPASS_LABELS = ["Child\u2019s name", "Date of birth", "Police reference", "Incident date and time", "Child present",
                    "Received"]


def _notification(nid: str, urn: str, first: str, surname: str, dob: date, ref: str, incident_at: datetime,
                  present: bool) -> EncompassNotification:
    return EncompassNotification(
        **event_metadata(EncompassNotification, producer="safebus-router", occurred_at=incident_at,
                         recorded_at=incident_at),
        notification_id=nid, setting_urn=urn, child_first_name=first, child_surname=surname,
        child_date_of_birth=dob, police_reference=ref, incident_at=incident_at, child_present=present,
    )


NOTIFICATIONS = {
    IVY_NEW: _notification(IVY_NEW, "900101", "Ivy", "Garside", date(2016, 3, 4), "NDP-2026-000123",
                           FIXED_NOW - timedelta(hours=3), present=True),
    IVY_OLD: _notification(IVY_OLD, "900101", "Ivy", "Garside", date(2016, 3, 4), "NDP-2026-000077",
                           FIXED_NOW - timedelta(days=9), present=False),
    NOAH: _notification(NOAH, "900101", "Noah", "Brindley", date(2018, 7, 21), "NDP-2026-000101",
                        FIXED_NOW - timedelta(days=2, hours=2), present=False),
    REUBEN_AT_WRENFIELD: _notification(REUBEN_AT_WRENFIELD, "900105", "Reuben", "Ashcombe", date(2012, 1, 9),
                                       "NDP-2026-000124", FIXED_NOW - timedelta(hours=4), present=True),
}
RECEIVED = {IVY_NEW: FIXED_NOW - timedelta(hours=1), NOAH: FIXED_NOW - timedelta(days=2),
            IVY_OLD: FIXED_NOW - timedelta(days=9) + timedelta(hours=1), REUBEN_AT_WRENFIELD: FIXED_NOW}
DUE_BY = {IVY_NEW: FIXED_NOW + timedelta(hours=11), NOAH: FIXED_NOW - timedelta(days=1)}


def _sealed(n: EncompassNotification) -> Arrival:
    """A stand-in envelope: the notification's JSON reversed (the store treats it as opaque bytes)."""
    return Arrival(notification_id=n.notification_id, setting_urn=n.setting_urn,
                   envelope=n.model_dump_json()[::-1].encode())


def _open(setting_urn: str, envelope: bytes) -> EncompassNotification | None:
    return EncompassNotification.model_validate_json(envelope.decode()[::-1])


class MovableClock:
    """The inbox's clock: the suite's fixed instant until a test moves it on (a sign-in delay passing)."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Inbox:
    """The running inbox and what the test can see behind it."""

    base_url: str
    clock: MovableClock
    app: SchoolInbox
    store: InboxStore
    key_adults: KeyAdults
    events: list[EncompassAcknowledged]
    bus_down: threading.Event
    """While set, handing an acknowledgement over fails (as a publish to an unreachable broker would)."""


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    """Hollowmere has three alerts (one acknowledged last week by the deputy); Wrenfield has one."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    for nid, n in NOTIFICATIONS.items():
        store.store(_sealed(n), received_at=RECEIVED[nid])
    store.acknowledge(IVY_OLD, "900101", staff_id=HOLLOWMERE_DEPUTY, role=KeyAdultRole.DEPUTY,
                      at=RECEIVED[IVY_OLD] + timedelta(hours=12))
    store.acknowledgement_sent(IVY_OLD, at=RECEIVED[IVY_OLD] + timedelta(hours=12))
    key_adults = KeyAdults(tmp_path / "key-adults.json")
    ensure_synthetic_key_adults(key_adults, [SETTINGS["900101"], SETTINGS["900105"]], password=PASSWORD)
    events: list[EncompassAcknowledged] = []
    bus_down = threading.Event()

    def publish(event: EncompassAcknowledged) -> None:
        if bus_down.is_set():
            raise ConnectionError("broker unreachable")
        events.append(event)

    clock = MovableClock()
    app = SchoolInbox(store=store, opener=_open, key_adults=key_adults, settings=SETTINGS, clock=clock,
                      due_by=DUE_BY.get, on_acknowledged=publish, secret=secrets.token_bytes(32))
    served = serve_in_thread(app.app())
    try:
        yield Inbox(base_url=served.base_url, clock=clock, app=app, store=store, key_adults=key_adults, events=events,
                    bus_down=bus_down)
    finally:
        served.stop()
        store.close()


@pytest.fixture
def context(browser: Browser, inbox: Inbox) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the inbox."""
    fresh = browser.new_context(viewport=VIEWPORT, base_url=inbox.base_url)
    fresh.set_default_timeout(5_000)  # local pages answer in milliseconds; fail fast
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A tab in that profile."""
    return context.new_page()


def _sign_in(page: Page, staff_id: str = HOLLOWMERE_KA, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#user_id", staff_id)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")


def _path(page: Page) -> str:
    """The page's path and query, decoded (``/login?next=/``)."""
    parts = urlsplit(page.url)
    return unquote(f"{parts.path}?{parts.query}" if parts.query else parts.path)


def _row_ids(page: Page, table: str) -> list[str]:
    return [r.get_attribute("data-notification-id") or "" for r in page.locator(f"{table} tbody tr").all()]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class TestSigningIn:
    def test_a_wrong_password_is_refused_then_the_right_one_opens_the_inbox(self, page: Page, inbox: Inbox) -> None:
        """The Key Adult sees an error for a wrong password, then their setting's alerts, newest first."""
        page.goto("/")
        assert _path(page) == "/login?next=/"
        _sign_in(page, password="not the right password")
        assert page.locator("[role=alert]").inner_text().count("not right") == 1
        assert page.input_value("#password") == ""
        assert "not the right password" not in page.content()

        _sign_in(page)
        assert _path(page) == "/"
        assert page.locator("h1").inner_text() == "Operation Encompass alerts"
        assert _row_ids(page, "#alerts") == [IVY_NEW, NOAH, IVY_OLD]
        assert "2 alerts are waiting for acknowledgement" in page.locator("#waiting-summary").inner_text()
        new, noah, old = page.locator("#alerts tbody tr").all()
        assert "Ivy Garside" in new.inner_text()
        assert "NEW" in new.inner_text().upper()
        assert "Due by Thu 19 Nov 2026, 08:30 GMT" in new.inner_text()
        assert "OVERDUE" in noah.inner_text().upper()
        assert "ACKNOWLEDGED" in old.inner_text().upper()
        assert "Reuben" not in page.content()

    def test_signed_out_visitors_are_sent_to_sign_in(self, page: Page, inbox: Inbox) -> None:
        """Without signing in, every page redirects to the sign-in page; signing out ends access."""
        ivy_ref = inbox.app.child_ref("900101", NOTIFICATIONS[IVY_NEW])
        for path in ("/", f"/alerts/{IVY_NEW}", f"/children/{ivy_ref}"):
            page.goto(path)
            assert _path(page).startswith("/login?next="), path
            assert page.locator("h1").inner_text() == "Sign in"
        assert "Ivy" not in page.content()

        _sign_in(page)
        page.click("button:has-text('Sign out')")
        assert _path(page) == "/login"
        page.goto(f"/alerts/{IVY_NEW}")
        assert _path(page).startswith("/login")
        assert "Ivy" not in page.content()


    def test_a_password_reset_ends_existing_sessions(self, page: Page, inbox: Inbox) -> None:
        """Someone signed in with the old password is signed out on their next click."""
        _sign_in(page)
        assert _path(page) == "/"
        inbox.key_adults.reset_password(HOLLOWMERE_KA, "a new password after a suspected leak")
        page.goto(f"/alerts/{IVY_NEW}")
        assert _path(page).startswith("/login")
        assert "Ivy" not in page.content()

    def test_repeated_wrong_passwords_make_the_staff_id_wait_not_lock(self, context: BrowserContext, page: Page,
                                                                      inbox: Inbox) -> None:
        """After ten wrong guesses the Key Adult is asked to wait; once the wait has passed, their password works."""
        page.goto("/login")
        token = page.input_value("input[name=csrf_token]")
        for attempt in range(10):
            guess = context.request.post("/login", form={"csrf_token": token, "user_id": HOLLOWMERE_KA,
                                                         "password": f"guess number {attempt}"}, max_redirects=0)
            if guess.status == 429:  # the previous guess's delay: let it pass, as a patient attacker would
                inbox.clock.now += timedelta(seconds=int(guess.headers["retry-after"]))
                guess = context.request.post("/login", form={"csrf_token": token, "user_id": HOLLOWMERE_KA,
                                                             "password": f"guess number {attempt}"}, max_redirects=0)
            assert guess.status == 401
        _sign_in(page)
        assert _path(page).startswith("/login")
        message = page.locator("[role=alert]").inner_text()
        assert "too many attempts" in message
        assert "Wait 5 minutes" in message  # 256 s after the tenth failure
        inbox.clock.now += timedelta(minutes=5)
        _sign_in(page)
        assert _path(page) == "/"


class TestReadingAnAlert:
    def test_an_alert_shows_exactly_the_encompass_fields(self, page: Page, inbox: Inbox) -> None:
        """Name, date of birth, police reference, incident time, presence and arrival: nothing else of the child."""
        _sign_in(page)
        page.click(f"a[href='/alerts/{IVY_NEW}']")
        assert _path(page) == f"/alerts/{IVY_NEW}"
        fields = page.locator("#encompass-fields")
        assert [t.strip() for t in fields.locator("dt").all_inner_texts()] == ENCOMPASS_LABELS
        assert [t.strip() for t in fields.locator("dd").all_inner_texts()] == [
            "Ivy Garside", "4 March 2016", "NDP-2026-000123", "Wed 18 Nov 2026, 18:30 GMT", "Yes",
            "Wed 18 Nov 2026, 20:30 GMT",
        ]
        text = page.locator("main").inner_text()
        for elsewhere in ("Noah", "Brindley", "NDP-2026-000077", "Reuben", NOTIFICATIONS[IVY_NEW].event_id):
            assert elsewhere not in text

    def test_pages_run_no_script_and_send_strict_security_headers(self, page: Page, inbox: Inbox) -> None:
        """No inline script, a CSP that forbids script, no framing, no referrer, nothing cached."""
        _sign_in(page)
        response = page.goto(f"/alerts/{IVY_NEW}")
        assert response is not None
        assert response.status == 200
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # so default-src 'none' governs scripts: none at all
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert page.locator("script").count() == 0
        assert page.locator("[onclick], [onload], [onsubmit], [onerror]").count() == 0
        assert "<script" not in page.content().lower()

        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.evaluate("""() => { const s = document.createElement('script');
                                  s.textContent = 'window.injected = true'; document.body.appendChild(s); }""")
        assert page.evaluate("() => window.injected === undefined")
        assert any("Content Security Policy" in line for line in console)

    def test_child_history_lists_that_childs_alerts_at_this_setting(self, page: Page, inbox: Inbox) -> None:
        """From an alert, the Key Adult opens the child's history: only that child's alerts, named by an opaque ref."""
        _sign_in(page)
        page.goto(f"/alerts/{IVY_NEW}")
        page.click("#child-history")
        path = _path(page)
        assert path.startswith("/children/")
        assert "ivy" not in path.lower()
        assert "garside" not in path.lower()
        assert "2016" not in path
        assert page.locator("h1").inner_text() == "Alert history for Ivy Garside"
        assert _row_ids(page, "#history") == [IVY_NEW, IVY_OLD]
        assert "NDP-2026-000077" in page.locator("#history").inner_text()
        assert "Noah" not in page.content()


class TestAcknowledging:
    def test_acknowledging_is_recorded_shown_and_reported_once(
            self, context: BrowserContext, page: Page, inbox: Inbox, tmp_path: Path) -> None:
        """One click records it and reports one event; a second tab's click and a resubmitted form add nothing."""
        _sign_in(page)
        page.goto(f"/alerts/{IVY_NEW}")
        second_tab = context.new_page()
        second_tab.goto(f"/alerts/{IVY_NEW}")
        token = second_tab.input_value("input[name=csrf_token]")
        before, after = tmp_path / "before.png", tmp_path / "after.png"
        page.screenshot(path=str(before))

        page.click("#acknowledge")
        assert _path(page) == f"/alerts/{IVY_NEW}"
        status = page.locator("#acknowledgement").inner_text()
        assert "ACKNOWLEDGED" in status.upper()  # the tag is styled in capitals
        assert "by 900101-ka (Key Adult)" in status
        assert page.locator("#acknowledge").count() == 0
        page.screenshot(path=str(after))

        second_tab.click("#acknowledge")  # a stale page, clicked after the first
        assert "by 900101-ka (Key Adult)" in second_tab.locator("#acknowledgement").inner_text()
        resubmitted = context.request.post(f"/alerts/{IVY_NEW}/acknowledge", form={"csrf_token": token},
                                           max_redirects=0)
        assert resubmitted.status == 303
        page.reload()

        assert len(inbox.events) == 1
        [event] = inbox.events
        assert event.event_id == acknowledgement_event_id(IVY_NEW)
        assert (event.notification_id, event.setting_urn, event.producer) == (IVY_NEW, "900101", "school-900101")
        assert event.acknowledged_by == Acknowledger(staff_id=HOLLOWMERE_KA, role=KeyAdultRole.KEY_ADULT)
        assert event.acknowledged_at == FIXED_NOW
        assert event.subjects == ()
        stored = inbox.store.alert("900101", IVY_NEW, _open)
        assert stored is not None
        assert stored.acknowledged_at == FIXED_NOW
        assert stored.acknowledged_by == event.acknowledged_by
        assert inbox.store.acknowledgements_unsent() == []

        page.goto("/")
        assert "1 alert is waiting for acknowledgement" in page.locator("#waiting-summary").inner_text()

        assert _png_size(before) == _png_size(after) == (VIEWPORT["width"], VIEWPORT["height"])
        assert before.read_bytes() != after.read_bytes()

    def test_an_acknowledgement_the_bus_could_not_take_is_kept_and_sent_later(self, page: Page,
                                                                                inbox: Inbox) -> None:
        """If publishing fails, the Key Adult still sees it acknowledged; the event goes once the bus is back."""
        _sign_in(page)
        page.goto(f"/alerts/{IVY_NEW}")
        inbox.bus_down.set()
        page.click("#acknowledge")
        assert "by 900101-ka (Key Adult)" in page.locator("#acknowledgement").inner_text()
        assert inbox.events == []
        assert [a.notification_id for a in inbox.store.acknowledgements_unsent()] == [IVY_NEW]
        inbox.bus_down.clear()
        assert inbox.app.send_pending_acknowledgements() == [acknowledgement_event_id(IVY_NEW)]
        assert inbox.app.send_pending_acknowledgements() == []
        assert [e.event_id for e in inbox.events] == [acknowledgement_event_id(IVY_NEW)]

    def test_a_form_without_this_sessions_token_is_refused(self, context: BrowserContext, page: Page,
                                                           inbox: Inbox) -> None:
        """A cross-site or forged POST (no token, or a made-up one) records nothing and reports nothing."""
        _sign_in(page)
        forms: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "forged"}]
        for form in forms:
            refused = context.request.post(f"/alerts/{IVY_NEW}/acknowledge", form=form, max_redirects=0)
            assert refused.status == 403
        token = page.input_value("input[name=csrf_token]")
        cross_site = context.request.post(f"/alerts/{IVY_NEW}/acknowledge", form={"csrf_token": token},
                                          headers={"Origin": "https://attacker.example"}, max_redirects=0)
        assert cross_site.status == 403
        assert inbox.events == []
        stored = inbox.store.alert("900101", IVY_NEW, _open)
        assert stored is not None
        assert stored.acknowledged_at is None


class TestOtherSettings:
    def test_another_settings_alert_is_not_found(self, browser: Browser, page: Page, inbox: Inbox) -> None:
        """Hollowmere's Key Adult gets the same 404 for Wrenfield's alert as for an id that does not exist."""
        _sign_in(page)
        other: Response | None = page.goto(f"/alerts/{REUBEN_AT_WRENFIELD}")
        assert other is not None
        assert other.status == 404
        other_text = page.locator("main").inner_text()
        assert "Reuben" not in page.content()
        missing = page.goto(f"/alerts/{UNKNOWN}")
        assert missing is not None
        assert missing.status == 404
        assert page.locator("main").inner_text() == other_text

        token = page.input_value("input[name=csrf_token]")
        posted = page.request.post(f"/alerts/{REUBEN_AT_WRENFIELD}/acknowledge", form={"csrf_token": token},
                                   max_redirects=0)
        assert posted.status == 404
        reuben_ref = inbox.app.child_ref("900105", NOTIFICATIONS[REUBEN_AT_WRENFIELD])
        history = page.goto(f"/children/{reuben_ref}")
        assert history is not None
        assert history.status == 404
        assert inbox.events == []
        assert inbox.store.acknowledgements_unsent() == []

        wrenfield = browser.new_context(viewport=VIEWPORT, base_url=inbox.base_url)
        try:
            own = wrenfield.new_page()
            _sign_in(own, WRENFIELD_KA)
            shown = own.goto(f"/alerts/{REUBEN_AT_WRENFIELD}")
            assert shown is not None
            assert shown.status == 200  # the same URL works for the setting it belongs to
            assert "Reuben Ashcombe" in own.locator("#encompass-fields").inner_text()
        finally:
            wrenfield.close()

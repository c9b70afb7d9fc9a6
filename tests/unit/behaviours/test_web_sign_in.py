"""
Signing in to the real web apps over real HTTP (issue 11, bullet 6): throttled before the check, sessions that end.

The school inbox and the audit dashboard are served on loopback by
`serve_in_thread` (aiohttp, real sockets, TLS from a certificate made here
with `cryptography`); requests are plain `http.client` with the cookies kept
by hand, so every header is what a browser would get.  The account commands
run as the real ``safebus`` program in a subprocess, as an administrator
would run them while the inbox is serving.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from safebus.app.cli_encompass import inbox_web_state
from safebus.consumers.audit.ledger import AuditLedger
from safebus.consumers.audit.officers import OfficerRole, Officers, default_officers_path
from safebus.consumers.audit.projection import AuditProjection
from safebus.consumers.audit.web import AuditDashboard
from safebus.consumers.inbox.key_adults import (
    EducationSetting,
    KeyAdult,
    KeyAdults,
    default_key_adults_path,
    ensure_synthetic_key_adults,
)
from safebus.consumers.inbox.store import InboxStore
from safebus.consumers.inbox.web import SchoolInbox
from safebus.consumers.web.serving import ServedApp, serve_in_thread, tls_context
from safebus.producers.synthetic import SCHOOLS
from safebus.pseudonyms import Tokeniser
from tests.conftest import FIXED_NOW
from tests.tls_files import self_signed_certificate

PASSWORD = "synthetic demo password"
SETTINGS = {urn: EducationSetting(urn=urn, agency_id=agency_id, name=name) for agency_id, urn, name, _ in SCHOOLS}
KA, DEPUTY = "900101-ka", "900101-deputy"


class Clock:
    """The apps' clock, moved by hand so that a sign-in delay passes at once."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Answer:
    """An HTTP response as the test needs it."""

    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Browser:
    """Cookies for one origin, kept by hand (name -> value), like one browser profile."""

    base_url: str
    tls: ssl.SSLContext | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        parts = urlsplit(self.base_url)
        assert parts.hostname is not None
        assert parts.port is not None
        connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(parts.hostname, parts.port, context=self.tls, timeout=30) if self.tls
            else http.client.HTTPConnection(parts.hostname, parts.port, timeout=30))
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or value in ('""', ""):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Answer(response.status, response.headers, text)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def csrf(self) -> str:
        """The token the sign-in page's form carries (and its pre-login cookie, kept)."""
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.get("/login").text)
        assert found is not None
        return found.group(1)

    def sign_in(self, user_id: str = KA, password: str = PASSWORD, *, token: str | None = None) -> Answer:
        return self.request("POST", "/login", form={"csrf_token": token or self.csrf(), "user_id": user_id,
                                                    "password": password, "next": "/"})

    def sign_out(self) -> Answer:
        page = self.get("/logout")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None
        return self.request("POST", "/logout", form={"csrf_token": found.group(1)})


@dataclass
class Inbox:
    """The serving inbox and what stands behind it."""

    served: ServedApp
    key_adults: KeyAdults
    clock: Clock
    state_dir: Path
    checked: list[str]
    """Every staff id whose password the inbox actually hashed."""

    def browser(self) -> Browser:
        return Browser(self.served.base_url)


class CountingKeyAdults(KeyAdults):
    """The real accounts file, counting each password check (the scrypt an attacker wants to run)."""

    def __init__(self, path: Path, checked: list[str]) -> None:
        super().__init__(path)
        self.checked = checked
        self._checked_lock = threading.Lock()

    def authenticate(self, staff_id: str, password: str) -> KeyAdult | None:
        """Count, then check as the real accounts do."""
        with self._checked_lock:
            self.checked.append(staff_id)
        return super().authenticate(staff_id, password)


def _inbox(state_dir: Path, *, tls: ssl.SSLContext | None = None) -> tuple[SchoolInbox, CountingKeyAdults, Clock]:
    checked: list[str] = []
    key_adults = CountingKeyAdults(default_key_adults_path(state_dir), checked)
    ensure_synthetic_key_adults(key_adults, [SETTINGS["900101"]], password=PASSWORD)
    clock = Clock()
    store = InboxStore(state_dir / "inbox.sqlite")
    app = SchoolInbox(store=store, opener=lambda urn, envelope: None, key_adults=key_adults, settings=SETTINGS,
                      clock=clock, due_by=lambda _nid: None, on_acknowledged=lambda _event: None,
                      secret=os.urandom(32), web_state=inbox_web_state_for(state_dir))
    return app, key_adults, clock


def inbox_web_state_for(state_dir: Path) -> Path:
    """The inbox's web state directory for a state directory, as ``safebus inbox web`` uses it."""
    from safebus.app.wiring import Settings
    from safebus.topics import TopicNames

    return inbox_web_state(Settings(state_dir=state_dir, bootstrap="", names=TopicNames()))


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    """Hollowmere's inbox (a Key Adult and a deputy), state in `tmp_path` as a real deployment keeps it."""
    app, key_adults, clock = _inbox(tmp_path)
    served = serve_in_thread(app.app())
    try:
        yield Inbox(served=served, key_adults=key_adults, clock=clock, state_dir=tmp_path,
                    checked=key_adults.checked)
    finally:
        served.stop()


def _safebus(state: Path, *argv: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAFEBUS_NEW_PASSWORD"}
    env["SAFEBUS_HOME"] = str(state)
    if password is not None:
        env["SAFEBUS_NEW_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "safebus", *argv], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)


# --------------------------------------------------------------------------- guessing


class TestGuessing:
    def test_forty_simultaneous_guesses_get_one_password_check_and_the_right_one_does_not_sign_in(
            self, inbox: Inbox) -> None:
        """39 wrong guesses and the right password, all at once: at most two are hashed; the rest are 429."""
        attacker = inbox.browser()
        token = attacker.csrf()
        start = threading.Barrier(40)
        answers: list[Answer] = []
        lock = threading.Lock()

        def guess(n: int) -> None:
            mine = Browser(attacker.base_url, cookies=dict(attacker.cookies))
            start.wait()
            answer = mine.sign_in(KA, PASSWORD if n == 39 else f"guess number {n:02d}", token=token)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        statuses = sorted(a.status for a in answers)
        assert len(answers) == 40
        assert len(inbox.checked) <= 2, f"{len(inbox.checked)} of 40 simultaneous guesses were checked"
        assert statuses.count(429) >= 38
        assert all("Retry-After" in a.headers for a in answers if a.status == 429)

    def test_wrong_passwords_slow_the_account_and_the_right_one_works_after_the_wait(self, inbox: Inbox) -> None:
        """Ten wrong guesses: the Key Adult is told to wait (not locked); once the wait passes, they sign in."""
        attacker = inbox.browser()
        for n in range(10):
            answer = attacker.sign_in(KA, f"guess number {n}")
            if answer.status == 429:
                inbox.clock.advance(int(answer.headers["Retry-After"]))
                answer = attacker.sign_in(KA, f"guess number {n}")
            assert answer.status == 401
        key_adult = inbox.browser()
        waiting = key_adult.sign_in()
        assert waiting.status == 429
        wait = int(waiting.headers["Retry-After"])
        assert 60 < wait <= 15 * 60
        assert "Wait" in waiting.text
        inbox.clock.advance(wait)
        signed_in = key_adult.sign_in()
        assert signed_in.status == 303
        assert key_adult.get("/").status == 200

    def test_guesses_by_a_third_party_never_delay_the_key_adults_own_browser(self, inbox: Inbox) -> None:
        """Someone hammering the account for hours: the browser the Key Adult signed in with before gets straight in."""
        key_adult = inbox.browser()
        assert key_adult.sign_in().status == 303
        assert key_adult.sign_out().status == 303
        attacker = inbox.browser()
        for n in range(12):
            answer = attacker.sign_in(KA, f"guess number {n}")
            if answer.status == 429:
                inbox.clock.advance(int(answer.headers["Retry-After"]) - 1)  # always just too early
        assert attacker.sign_in(KA, PASSWORD).status == 429  # even the right password: the account is slowed
        assert key_adult.sign_in().status == 303
        assert key_adult.get("/").status == 200


# --------------------------------------------------------------------------- sessions


class TestSessionsEnd:
    def test_after_sign_out_the_old_cookie_is_refused(self, inbox: Inbox) -> None:
        """A copy of the session cookie taken before sign-out opens nothing afterwards."""
        key_adult = inbox.browser()
        assert key_adult.sign_in().status == 303
        copy = Browser(key_adult.base_url, cookies=dict(key_adult.cookies))
        assert copy.get("/").status == 200
        assert key_adult.sign_out().status == 303
        answer = copy.get("/")
        assert answer.status == 303
        assert answer.location.startswith("/login")

    def test_the_reset_password_command_ends_sessions_at_once(self, inbox: Inbox) -> None:
        """``safebus key-adult reset-password`` run while the inbox serves: the next request is signed out."""
        key_adult = inbox.browser()
        assert key_adult.sign_in().status == 303
        done = _safebus(inbox.state_dir, "key-adult", "reset-password", "--staff-id", KA,
                        password="a new password after a suspected leak")
        assert done.returncode == 0, done.stderr
        assert key_adult.get("/").location.startswith("/login")

    def test_the_remove_command_ends_sessions_at_once(self, inbox: Inbox) -> None:
        """``safebus key-adult remove``: the account and every session of it are gone; the deputy's stays."""
        key_adult, deputy = inbox.browser(), inbox.browser()
        assert key_adult.sign_in().status == 303
        assert deputy.sign_in(DEPUTY).status == 303
        done = _safebus(inbox.state_dir, "key-adult", "remove", "--staff-id", KA)
        assert done.returncode == 0, done.stderr
        assert "1 web sessions ended" in done.stdout
        assert key_adult.get("/").location.startswith("/login")
        assert deputy.get("/").status == 200
        assert inbox.key_adults.get(KA) is None

    def test_the_officer_commands_end_dashboard_sessions(self, tmp_path: Path) -> None:
        """``safebus audit officer remove`` ends the officer's dashboard sessions in the dashboard's state."""
        from safebus.app.wiring import Settings
        from safebus.topics import TopicNames

        audit_dir = Settings(state_dir=tmp_path, bootstrap="", names=TopicNames()).audit_dir
        officers = Officers(default_officers_path(tmp_path))
        officers.add("igo-1", role=OfficerRole.AUDITOR, display_name="Auditor (synthetic)", password=PASSWORD)
        dashboard = _dashboard(tmp_path, officers, audit_dir)
        served = serve_in_thread(dashboard.app())
        try:
            officer = Browser(served.base_url)
            assert officer.sign_in("igo-1").status == 303
            done = _safebus(tmp_path, "audit", "officer", "remove", "--id", "igo-1")
            assert done.returncode == 0, done.stderr
            assert "1 dashboard sessions ended" in done.stdout
            assert officer.get("/search").location.startswith("/login")
        finally:
            served.stop()


def _dashboard(tmp_path: Path, officers: Officers, audit_dir: Path) -> AuditDashboard:
    from safebus.consumers.audit.reports import LedgerViewSink
    from tests.unit.consumers.audit.test_projection import new_ledger

    ledger: AuditLedger = new_ledger(tmp_path / "ledger.sqlite")
    projection = AuditProjection(tmp_path / "projection.sqlite")
    return AuditDashboard(projection=projection, ledger=ledger, tokeniser=Tokeniser(os.urandom(32)),
                          officers=officers, record_view=LedgerViewSink(ledger, projection, clock=lambda: FIXED_NOW),
                          clock=lambda: FIXED_NOW, secret=os.urandom(32), web_state=audit_dir)


# --------------------------------------------------------------------------- TLS and headers


class TestTransport:
    def test_the_inbox_serves_tls_itself_with_hsts_and_secure_cookies(self, tmp_path: Path) -> None:
        """Given a certificate and key, the inbox speaks HTTPS, sends HSTS and marks every cookie Secure."""
        cert, key = self_signed_certificate(tmp_path)
        app, _, _ = _inbox(tmp_path)
        served = serve_in_thread(app.app(), tls=tls_context(cert, key))
        try:
            assert served.base_url.startswith("https://")
            trusting = ssl.create_default_context(cafile=str(cert))
            browser = Browser(served.base_url, tls=trusting)
            page = browser.get("/login")
            assert page.status == 200
            assert page.headers["Strict-Transport-Security"].startswith("max-age=")
            signed_in = browser.sign_in()
            assert signed_in.status == 303
            cookies = [c for c in signed_in.headers.get_all("Set-Cookie") or [] if "Max-Age=0" not in c]
            assert len(cookies) == 2
            assert all("Secure" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in cookies)
            assert browser.get("/").status == 200
        finally:
            served.stop()

    def test_plain_http_sends_no_hsts(self, inbox: Inbox) -> None:
        """HSTS only ever travels over TLS: on plain HTTP (a TLS proxy in front) the app does not send it."""
        assert "Strict-Transport-Security" not in inbox.browser().get("/login").headers

    def test_no_response_names_the_framework_or_its_version(self, inbox: Inbox) -> None:
        """``Server: safebus`` on pages, redirects, errors and aiohttp's own answer to a malformed request."""
        browser = inbox.browser()
        for answer in (browser.get("/login"), browser.get("/"), browser.get("/no-such-page"),
                       browser.request("POST", "/login", form={"user_id": "x"})):
            assert answer.headers["Server"] == "safebus", answer.status
        parts = urlsplit(inbox.served.base_url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
            reply = raw.recv(65536).decode("latin-1")
        assert reply.split("\r\n", 1)[0].endswith("400 Bad Request")
        assert re.search(r"(?im)^server: safebus\r$", reply), reply
        assert "aiohttp" not in reply.lower()
        assert "python" not in reply.lower()

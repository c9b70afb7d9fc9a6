"""
Two instances of the school inbox behind one address, on one PostgreSQL store: either one serves any request.

How a partnership runs more than one web server: each instance keeps
nothing of its own (the alerts, acknowledgements, sessions and sign-in
throttle are in the database ``SAFEBUS_DATABASE_URL`` names), and both
listen on one address with ``SO_REUSEPORT``, so the kernel hands each new
connection to one or the other, as a load balancer would.  Every request
here is a new connection, and a test-only header says which instance
answered, so the test can show that a session signed in through one is
honoured by the other, an acknowledgement made through one is seen through
the other, and a sign-out through either ends the session on both.  Each
instance has a state folder of its own, as on two hosts, so nothing but the
database joins them: the Key Adult accounts are there too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from safebus.consumers.inbox.key_adults import KeyAdults, default_key_adults_path, ensure_synthetic_key_adults
from safebus.consumers.inbox.store import Arrival, InboxStore
from safebus.consumers.inbox.web import SchoolInbox
from safebus.consumers.web.account_store import account_source
from safebus.consumers.web.serving import ServedApp, serve_in_thread
from tests.conftest import FIXED_NOW
from tests.postgresql_server import Server, postgresql_fixture
from tests.unit.behaviours.test_web_sign_in import KA, PASSWORD, SETTINGS, Answer, Browser, Clock, inbox_web_state_for
from tests.unit.consumers.inbox.test_store import _notification
from tests.unit.consumers.inbox.test_store import _open as _open_alert

postgresql = postgresql_fixture()

INSTANCE = "X-Test-Instance"
"""Which instance answered: a header only this test adds, so it can tell them apart."""

_ATTEMPTS = 60
"""New connections tried before concluding the other instance never answers (each goes to either: 2**-59 by chance)."""


@dataclass
class Pair:
    """Two served instances and the one address they share."""

    address: str
    instances: list[ServedApp]
    store: InboxStore
    notification_id: str
    hosts: Path
    """Where the instances' state folders are (one each)."""

    def browser(self) -> Browser:
        return Browser(self.address)


def _tagged(app: web.Application, name: str) -> web.Application:
    async def tag(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[INSTANCE] = name

    app.on_response_prepare.append(tag)
    return app


def _key_adults(host: Path) -> KeyAdults:
    """The Key Adults as the wiring opens them on `host` (``SAFEBUS_DATABASE_URL`` set): the shared database's."""
    path = default_key_adults_path(host)
    return KeyAdults(path, source=account_source(path, name="key-adults", what="Key Adult"))


@pytest.fixture
def pair(postgresql: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    url = postgresql.new_database("web")
    monkeypatch.setenv("SAFEBUS_DATABASE_URL", url)
    ensure_synthetic_key_adults(_key_adults(tmp_path / "admin"), [SETTINGS["900101"]], password=PASSWORD)
    store = InboxStore(url)
    notification_id = str(uuid.uuid4())
    envelope = _notification(notification_id).model_dump_json()[::-1].encode()  # the store's tests' stand-in seal
    store.store(Arrival(notification_id=notification_id, setting_urn="900101", envelope=envelope),
                received_at=FIXED_NOW)
    secret, clock = b"one secret for every instance of the inbox!", Clock()  # as one deployment configures both
    served: list[ServedApp] = []
    try:
        for name in ("a", "b"):
            inbox = SchoolInbox(store=InboxStore(url), opener=_open_alert, key_adults=_key_adults(tmp_path / name),
                                settings=SETTINGS, clock=clock, due_by=lambda _nid: None,
                                on_acknowledged=lambda _event: None, secret=secret, secure_cookies=False,
                                web_state=inbox_web_state_for(tmp_path / name))  # no folder in common
            port = int(served[0].base_url.rsplit(":", 1)[1]) if served else 0
            served.append(serve_in_thread(_tagged(inbox.app(), name), port=port, reuse_port=True))
        assert served[0].base_url == served[1].base_url
        yield Pair(address=served[0].base_url, instances=served, store=store, notification_id=notification_id,
                   hosts=tmp_path)
    finally:
        for instance in served:
            instance.stop()
        store.close()


def _until_served_by(browser: Browser, path: str, instance: str) -> Answer:
    """GET `path` on new connections until `instance` answers; fail if it never does."""
    for _ in range(_ATTEMPTS):
        answer = browser.get(path)
        if answer.headers[INSTANCE] == instance:
            return answer
    pytest.fail(f"instance {instance} answered none of {_ATTEMPTS} connections to one address")


def _other(instance: str) -> str:
    return "b" if instance == "a" else "a"


def test_a_session_signed_in_through_one_instance_is_honoured_by_the_other(pair: Pair) -> None:
    browser = pair.browser()
    signed_in = browser.sign_in(KA)
    assert signed_in.status == 303, signed_in.text
    first = signed_in.headers[INSTANCE]
    page = _until_served_by(browser, "/", _other(first))
    assert page.status == 200, "the other instance sent the Key Adult back to sign in"
    assert "Ivy Garside" in page.text
    assert not list(pair.hosts.rglob("*.sqlite")), "no instance keeps a store of its own"
    assert not list(pair.hosts.rglob("key-adults.json")), "the accounts are in the database, not a file"


def test_an_acknowledgement_through_one_instance_is_seen_through_the_other(pair: Pair) -> None:
    browser = pair.browser()
    assert browser.sign_in(KA).status == 303
    alert_page = browser.get(f"/alerts/{pair.notification_id}")
    assert "Not acknowledged yet" in alert_page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', alert_page.text)
    assert token is not None
    acknowledged = browser.request("POST", f"/alerts/{pair.notification_id}/acknowledge",
                                   form={"csrf_token": token.group(1)})
    assert acknowledged.status == 303
    seen = _until_served_by(browser, f"/alerts/{pair.notification_id}", _other(acknowledged.headers[INSTANCE]))
    assert seen.status == 200
    assert "Acknowledged" in seen.text
    assert KA in seen.text
    alert = pair.store.alert("900101", pair.notification_id, _open_alert)
    assert alert is not None
    assert alert.acknowledged_by is not None
    assert alert.acknowledged_by.staff_id == KA


def test_signing_out_through_either_instance_ends_the_session_on_both(pair: Pair) -> None:
    browser = pair.browser()
    assert browser.sign_in(KA).status == 303
    cookies = dict(browser.cookies)
    signed_out = browser.sign_out()
    assert signed_out.status == 303
    stolen = Browser(pair.address, cookies=cookies)  # a copy of the cookie kept from before the sign-out
    for instance in ("a", "b"):
        answer = _until_served_by(stolen, "/", instance)
        assert answer.status == 303
        assert "/login" in answer.location

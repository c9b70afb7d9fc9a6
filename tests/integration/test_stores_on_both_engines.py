"""
The consumers' stores behave the same on SQLite and on a real PostgreSQL server; ``safebus db upgrade`` works on both.

A store is chosen by its location (a path, or ``postgresql://…``), so only a
test proves the one set of portable statements does the same on both
engines.  Each scenario runs on a fresh SQLite file and on a fresh database
of a throwaway server (`tests.postgresql_server`, ICU ``en-GB`` collation)
and must observe exactly the same things, in order; the scenarios open each
store *twice* on one location, as two hosts would, so "first acknowledgement
wins" and "a referral is taken once" are shown across connections, not just
within one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

from safebus.consumers.encompass.calendar_files import sample_calendars
from safebus.consumers.encompass.delivery_policy import load_policy
from safebus.consumers.encompass.monitor import MONITOR_SCHEMA, EncompassMonitor
from safebus.consumers.inbox.key_adults import KeyAdults
from safebus.consumers.inbox.store import INBOX_SCHEMA, InboxStore
from safebus.consumers.mail.outbox import MailOutbox, RetryPolicy
from safebus.consumers.queues.store import QUEUES_SCHEMA, NotInQueue, QueueStore
from safebus.consumers.web.account_store import ACCOUNTS_SCHEMA, DatabaseSource
from safebus.consumers.web.sessions import SESSIONS_SCHEMA, SessionStore
from safebus.consumers.web.sign_in_throttle import THROTTLE_SCHEMA, SignInThrottle, Throttled
from safebus.migrations import status
from safebus.schemas.encompass import KeyAdultRole
from tests.conftest import FIXED_NOW
from tests.postgresql_server import Server, postgresql_fixture
from tests.unit.consumers.encompass.test_monitor import _acknowledged, _decision, _delivered
from tests.unit.consumers.inbox.test_store import _arrival as _alert
from tests.unit.consumers.inbox.test_store import _open as _open_alert
from tests.unit.consumers.queues.test_store import CS, IDVA
from tests.unit.consumers.queues.test_store import _arrival as _referral
from tests.unit.consumers.queues.test_store import _open as _open_referral

postgresql = postgresql_fixture()

Scenario = Callable[[Path | str], list[object]]


def _both(postgresql: Server, tmp_path: Path, name: str, scenario: Scenario) -> list[object]:
    """Run `scenario` on a fresh SQLite file and a fresh PostgreSQL database; assert both saw the same."""
    expected = scenario(tmp_path / f"{name}.sqlite")
    assert scenario(postgresql.new_database(name)) == expected
    return expected


def test_the_inbox_stores_once_acknowledges_once_and_sends_each_acknowledgement_once(
        postgresql: Server, tmp_path: Path) -> None:
    def scenario(location: Path | str) -> list[object]:
        worker, web = InboxStore(location), InboxStore(location)  # two hosts on one inbox
        try:
            seen: list[object] = [
                worker.store_many([_alert("n2"), _alert("n1"), _alert("n3", "900105")], received_at=FIXED_NOW),
                worker.store_many([_alert("n1"), _alert("n4")], received_at=FIXED_NOW + timedelta(minutes=1)),
                [a.notification_id for a in web.alerts("900101", _open_alert)],
                web.acknowledge("n1", "900101", staff_id="900101-ka", role=KeyAdultRole.KEY_ADULT,
                                at=FIXED_NOW + timedelta(hours=1)),
                worker.acknowledge("n1", "900101", staff_id="900101-deputy", role=KeyAdultRole.DEPUTY,
                                   at=FIXED_NOW + timedelta(hours=2)),
                web.acknowledge("n3", "900101", staff_id="900101-ka", role=KeyAdultRole.KEY_ADULT,
                                at=FIXED_NOW),  # another setting's alert
            ]
            alert = worker.alert("900101", "n1", _open_alert)
            assert alert is not None
            seen += [alert.acknowledged_by, alert.acknowledged_at, alert.describe()]
            unsent = worker.acknowledgements_unsent()
            worker.acknowledgement_sent("n1", at=FIXED_NOW + timedelta(hours=3))
            seen += [unsent, worker.acknowledgements_unsent("900101"),
                     sorted(worker.received_at(["n1", "n3", "nope"]).items())]
            rows = worker.raw_rows()
            seen += [len(rows), any("Garside" in cell for row in rows for cell in row)]
            return seen
        finally:
            worker.close()
            web.close()

    seen = _both(postgresql, tmp_path, "inbox", scenario)
    assert seen[:6] == [3, 1, ["n1", "n2", "n4"], True, False, False]
    assert seen[-2:] == [4, False], "the inbox holds the sealed envelopes only, on both engines"


def test_the_queues_store_once_and_a_referral_is_taken_once_across_hosts(postgresql: Server, tmp_path: Path) -> None:
    def scenario(location: Path | str) -> list[object]:
        one, two = QueueStore(location), QueueStore(location)
        try:
            seen: list[object] = [
                one.store_many([_referral("r2"), _referral("r1"), _referral("r3", IDVA)], received_at=FIXED_NOW),
                two.store_many([_referral("r1")], received_at=FIXED_NOW + timedelta(minutes=1)),
                [i.referral_id for i in two.items(CS, _open_referral)], sorted(one.referral_ids(IDVA)),
                one.take(CS, "r1", "cs-duty-1", FIXED_NOW + timedelta(hours=1)),
                two.take(CS, "r1", "cs-duty-2", FIXED_NOW + timedelta(hours=2)),
            ]
            with pytest.raises(NotInQueue):
                two.take(CS, "r3", "cs-duty-2", FIXED_NOW)
            due = two.receipts_due(CS)
            one.receipts_sent(CS, [r.referral_id for r in due], at=FIXED_NOW + timedelta(hours=3))
            seen += [due, one.receipts_due(CS), [i.status for i in one.items(CS, _open_referral)]]
            return seen
        finally:
            one.close()
            two.close()

    seen = _both(postgresql, tmp_path, "queues", scenario)
    assert seen[:6] == [3, 0, ["r1", "r2"], ["r3"], True, False]


def test_the_deadline_monitor_tracks_escalates_and_refuses_a_bad_fact_alone(postgresql: Server, tmp_path: Path) -> None:
    night = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)

    def scenario(location: Path | str) -> list[object]:
        path, database = (location, None) if isinstance(location, Path) else (tmp_path / "unused.sqlite", location)
        monitor = EncompassMonitor(path, database=database, calendars=sample_calendars(), policy=load_policy(),
                                   urn_of={"school-900101": "900101"})
        try:
            refused: list[tuple[int, Exception]] = []
            bad = _decision("bad", at=night) | {"recorded_at": "not a time"}
            seen: list[object] = [
                monitor.observe([_acknowledged("n2", night + timedelta(hours=1)),  # read before its decision
                                 _decision("n1", at=night), bad, _delivered("n1", night + timedelta(seconds=3)),
                                 _decision("n2", at=night)], refused=refused),
                [index for index, _ in refused], [d.notification_id for d in monitor.new_deadlines(at=night)],
            ]
            deputies = datetime(2026, 11, 19, 8, 10, tzinfo=UTC)
            [step] = monitor.due_steps(deputies)
            monitor.mark_fired(step, at=deputies)
            seen += [step.step, monitor.due_steps(deputies), monitor.fired("n1"),
                     [(s.tracked.notification_id, s.step) for s in monitor.due_steps(deputies + timedelta(hours=1))],
                     monitor.all(), monitor.tracked("bad")]
            return seen
        finally:
            monitor.close()

    seen = _both(postgresql, tmp_path, "monitor", scenario)
    assert not (tmp_path / "unused.sqlite").exists(), "with a database, the monitor's file holds nothing"
    assert seen[1] == [2], "only the unreadable fact was refused; the rest of its batch applied"
    assert seen[2] == ["n1", "n2"]
    assert seen[-1] is None


def test_sessions_are_shared_by_instances_of_one_app_and_kept_apart_from_another_app(
        postgresql: Server, tmp_path: Path) -> None:
    now = [FIXED_NOW]

    def scenario(location: Path | str) -> list[object]:
        clock = lambda: now[0]  # noqa: E731 - one shared, movable clock
        one, two = SessionStore(location, clock=clock, realm="school-inbox"), SessionStore(location, clock=clock,
                                                                                          realm="school-inbox")
        audit = SessionStore(location, clock=clock, realm="safebus")
        try:
            now[0] = FIXED_NOW
            cookie, session = one.start(user_id="900101-ka", version="v1", ttl=timedelta(hours=8))
            other, _ = one.start(user_id="900101-ka", version="v1", ttl=timedelta(minutes=5))
            audit.start(user_id="900101-ka", version="v9", ttl=timedelta(hours=8))
            seen: list[object] = [two.find(cookie) == session, audit.find(cookie), two.count_for("900101-ka"),
                                  audit.count_for("900101-ka")]
            now[0] = FIXED_NOW + timedelta(minutes=10)
            seen += [two.find(other), two.count_for("900101-ka")]
            seen += [two.end_all_for("900101-ka"), one.find(cookie), audit.count_for("900101-ka")]
            return seen
        finally:
            one.close()
            two.close()
            audit.close()

    seen = _both(postgresql, tmp_path, "sessions", scenario)
    assert seen == [True, None, 2, 1, None, 1, 2, None, 1]


def test_the_sign_in_throttle_is_one_lock_for_every_instance(postgresql: Server, tmp_path: Path) -> None:
    def scenario(location: Path | str) -> list[object]:
        one, two = SignInThrottle(location, clock=lambda: FIXED_NOW), SignInThrottle(location, clock=lambda: FIXED_NOW)
        try:
            seen: list[object] = [one.reserve(account="900101-KA", source="192.0.2.7").lanes,
                                  two.reserve(account="900101-ka", source="192.0.2.7").lanes]
            with pytest.raises(Throttled) as refused:
                one.reserve(account="900101-ka", source="192.0.2.8")
            seen += [refused.value.retry_after_s, two.failures(["account:900101-ka", "source:192.0.2.7"])]
            return seen
        finally:
            one.close()
            two.close()

    seen = _both(postgresql, tmp_path, "throttle", scenario)
    assert seen[-1] == {"account:900101-ka": 2, "source:192.0.2.7": 2}


def test_the_mail_outbox_keeps_each_message_once_and_retries_it(postgresql: Server, tmp_path: Path) -> None:
    def scenario(location: Path | str) -> list[object]:
        outbox = MailOutbox(location, retry=RetryPolicy())
        try:
            mail = EmailMessage()
            mail["Subject"], mail["To"] = "An Operation Encompass alert is waiting", "dsl@school-900101.example"
            mail.set_content("Sign in to the school inbox to read it.")
            seen: list[object] = [outbox.put("k1", mail, now=FIXED_NOW), outbox.put("k1", mail, now=FIXED_NOW),
                                  [p.key for p in outbox.due(FIXED_NOW)],
                                  outbox.failed("k1", now=FIXED_NOW, reason="421 try later"),
                                  outbox.due(FIXED_NOW), outbox.next_due()]
            outbox.sent("k1", now=FIXED_NOW + timedelta(minutes=1))
            seen += [outbox.counts(), outbox.due(FIXED_NOW + timedelta(days=1))]
            return seen
        finally:
            outbox.close()

    seen = _both(postgresql, tmp_path, "mail", scenario)
    assert seen[:3] == [True, False, ["k1"]]


def test_key_adult_accounts_are_one_set_for_every_host(postgresql: Server, tmp_path: Path) -> None:
    def scenario(location: Path | str) -> list[object]:
        folder = tmp_path / "files-never-written"  # the accounts are in the database; no file is read or made
        one = KeyAdults(folder / "one.json", source=DatabaseSource(location, name="key-adults", what="Key Adult"))
        two = KeyAdults(folder / "two.json", source=DatabaseSource(location, name="key-adults", what="Key Adult"))
        added = one.add("900101-ka", setting_urn="900101", role=KeyAdultRole.KEY_ADULT, display_name="Key Adult",
                        email="dsl@school-900101.example", password="synthetic demo password")
        seen: list[object] = [two.get("900101-ka") == added, two.authenticate("900101-ka", "synthetic demo password")
                              == added, [k.staff_id for k in two.for_setting("900101")]]
        two.reset_password("900101-ka", "another synthetic password")
        seen += [one.authenticate("900101-ka", "synthetic demo password"), one.get("900101-ka") == added]
        return seen

    assert _both(postgresql, tmp_path, "accounts", scenario) == [True, True, ["900101-ka"], None, False]
    assert not (tmp_path / "files-never-written").exists()


def test_two_hosts_opening_a_fresh_database_at_once_apply_each_migration_once(postgresql: Server) -> None:
    url = postgresql.new_database("race")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_inbox() -> None:
        try:
            start.wait(10)
            InboxStore(url).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_inbox) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with psycopg.connect(url) as db:
        applied = db.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
    assert applied == [("inbox-0001-baseline",)]


def _safebus(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAFEBUS_DATABASE_URL"} | {"SAFEBUS_HOME": str(state)}
    return subprocess.run([sys.executable, "-m", "safebus", *argv], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def test_db_upgrade_brings_a_fresh_database_to_the_current_version_once_on_both_engines(
        postgresql: Server, tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'shared.sqlite'}", postgresql.new_database("upgrade")):
        assert _safebus(tmp_path, "db", "status", "--url", url).returncode == 3
        first = _safebus(tmp_path, "db", "upgrade", "--url", url)
        assert first.returncode == 0, first.stderr
        assert [line.split()[-1] for line in first.stdout.splitlines()] == [
            "inbox-0001-baseline", "queues-0001-baseline", "monitor-0001-baseline", "sessions-0002-realm",
            "throttle-0001-baseline", "accounts-0001-documents"]
        second = _safebus(tmp_path, "db", "upgrade", "--url", url)
        assert second.returncode == 0, second.stderr
        assert all(line.endswith("already current") for line in second.stdout.splitlines())
        assert _safebus(tmp_path, "db", "status", "--url", url).returncode == 0
        for schema in (INBOX_SCHEMA, QUEUES_SCHEMA, MONITOR_SCHEMA, SESSIONS_SCHEMA, THROTTLE_SCHEMA, ACCOUNTS_SCHEMA):
            assert status(url, schema).current


def test_a_store_whose_server_connection_is_lost_fails_one_call_and_the_next_reconnects(postgresql: Server) -> None:
    """A server-side disconnect (as in a restart or failover) costs the call that meets it; the store carries on."""
    url = postgresql.new_database("lost")
    store = InboxStore(url)
    try:
        assert store.store(_alert("n1"), received_at=FIXED_NOW)
        with psycopg.connect(postgresql.url(), autocommit=True) as admin:
            ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                  (url.rsplit("/", 1)[1],)).fetchall()
        assert ended == [(True,)]  # exactly the store's connection
        with pytest.raises(psycopg.OperationalError):
            store.alerts("900101", _open_alert)
        assert store.store(_alert("n2"), received_at=FIXED_NOW)
        assert [a.notification_id for a in store.alerts("900101", _open_alert)] == ["n1", "n2"]
    finally:
        store.close()

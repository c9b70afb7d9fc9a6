"""
The workers on a shared PostgreSQL database: the inbox worker and the deadline monitor, through the real bus.

With ``SAFEBUS_DATABASE_URL`` set, the same commands that keep their stores
in files under the state directory keep them in that database instead: an
incident published by the police reaches the school inbox *in PostgreSQL*,
the monitor tracks its deadline there, ``safebus inbox show`` (run as an
operator would, in the same environment) reads it from there, and the state
directory holds no store of its own.  The broker is the session's
(tests/integration/conftest.py); the server is `tests.postgresql_server`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from safebus.app.encompass_wiring import open_monitor
from safebus.app.wiring import inbox_opener
from safebus.consumers.inbox.store import InboxStore
from safebus.schemas.decision import Outcome
from safebus.schemas.police import Child
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for
from tests.postgresql_server import Server, postgresql_fixture

pytestmark = pytest.mark.kafka

postgresql = postgresql_fixture()


@pytest.fixture(scope="module")
def database(postgresql: Server) -> Iterator[str]:
    """One database for the bus's stores, named to this process and every worker it starts."""
    url = postgresql.new_database("bus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAFEBUS_DATABASE_URL", url)
        yield url


@pytest.fixture(scope="module")
def pg_bus(kafka: Broker, database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A fresh bus whose router, inbox worker and monitor run with the shared database set."""
    with running_bus(kafka, tmp_path_factory.mktemp("pgbus"), prefix=f"t{uuid.uuid4().hex[:10]}") as running:
        running.start("monitor")
        yield running


def test_an_incident_reaches_the_inbox_and_the_monitor_in_postgresql(pg_bus: Bus, database: str) -> None:
    child = Child(first_name="Odile", surname="Farrant", date_of_birth=date(2016, 10, 3), present=True,
                  school_urn="900101")
    incident = make_incident(child)
    [event_id] = pg_bus.publisher().publish([incident])
    decision = wait_for(lambda: next(iter(pg_bus.encompass({event_id}).values()), None),
                        what=f"the Encompass decision\n{pg_bus.log('processor')}")
    assert decision.outcome is Outcome.SHARED
    notification_id = decision.output_id
    assert notification_id is not None

    inbox = InboxStore(database)
    try:
        alert = wait_for(lambda: inbox.alert("900101", notification_id, inbox_opener(pg_bus.settings)),
                         what=f"the alert in the PostgreSQL inbox\n{pg_bus.log('inbox')}")
    finally:
        inbox.close()
    assert alert.notification is not None
    assert (alert.notification.child_first_name, alert.notification.police_reference) == (
        "Odile", incident.police_reference)

    monitor = open_monitor(pg_bus.settings)  # the wiring, in this environment: the same database
    try:
        tracked = wait_for(lambda: monitor.tracked(notification_id),
                           what=f"the deadline tracked in PostgreSQL\n{pg_bus.log('monitor')}")
    finally:
        monitor.close()
    assert tracked.setting_urn == "900101"

    shown = subprocess.run([sys.executable, "-m", "safebus", "inbox", "show", "--school", "900101"],
                           env={**os.environ, "SAFEBUS_HOME": str(pg_bus.settings.state_dir),
                                "SAFEBUS_TOPIC_PREFIX": pg_bus.names.prefix},
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"Odile Farrant (born 2016-10-03) · police ref {incident.police_reference}" in shown
    state: Path = pg_bus.settings.state_dir
    assert not list(state.rglob("inbox.sqlite")), "the inbox worker kept no file of its own"
    assert not list(state.rglob("*-monitor.sqlite")), "nor did the monitor"

"""A school's inbox keeps each alert once, holds no plaintext, shows erasure, and records who acknowledged."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from safebus.consumers.inbox.store import Arrival, InboxStore
from safebus.schemas._base import event_metadata
from safebus.schemas.encompass import Acknowledger, EncompassNotification, KeyAdultRole
from tests.conftest import FIXED_NOW


def _notification(nid: str, urn: str = "900101") -> EncompassNotification:
    return EncompassNotification(
        **event_metadata(EncompassNotification, producer="safebus-router", occurred_at=FIXED_NOW,
                         recorded_at=FIXED_NOW),
        notification_id=nid, setting_urn=urn, child_first_name="Ivy", child_surname="Garside",
        child_date_of_birth=date(2016, 3, 4), police_reference="NDP-2026-000123",
        incident_at=FIXED_NOW - timedelta(hours=3), child_present=True,
    )


def _arrival(nid: str, urn: str = "900101") -> Arrival:
    """A stand-in envelope: the notification's JSON reversed (the store must treat it as opaque bytes)."""
    envelope = _notification(nid, urn).model_dump_json()[::-1].encode()
    return Arrival(notification_id=nid, setting_urn=urn, envelope=envelope)


def _open(setting_urn: str, envelope: bytes) -> EncompassNotification | None:
    return EncompassNotification.model_validate_json(envelope.decode()[::-1])


def test_redelivery_is_stored_once(tmp_path: Path) -> None:
    """The same notification delivered twice appears once, with its first arrival time."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    assert store.store(_arrival("n1"), received_at=FIXED_NOW) is True
    assert store.store(_arrival("n1"), received_at=FIXED_NOW + timedelta(minutes=5)) is False
    [alert] = store.alerts("900101", _open)
    assert alert.received_at == FIXED_NOW
    assert alert.notification is not None
    assert alert.notification.child_first_name == "Ivy"
    assert alert.acknowledged_at is None


def test_each_school_sees_only_its_own_alerts(tmp_path: Path) -> None:
    """One database can host several inboxes without mixing them."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    store.store(_arrival("n1", "900101"), received_at=FIXED_NOW)
    store.store(_arrival("n2", "900105"), received_at=FIXED_NOW)
    assert [a.notification_id for a in store.alerts("900105", _open)] == ["n2"]
    assert store.alerts("900999", _open) == []


def test_inbox_holds_only_what_arrived_sealed(tmp_path: Path) -> None:
    """Nothing the store writes is plaintext: it keeps the envelope bytes as they came."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    store.store(_arrival("n1"), received_at=FIXED_NOW)
    assert not any("Ivy" in cell for row in store.raw_rows() for cell in row)


def test_an_alert_that_can_no_longer_be_opened_shows_as_erased(tmp_path: Path) -> None:
    """After a child's keys are destroyed the alert stays listed, without any of the child's data."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    store.store(_arrival("n1"), received_at=FIXED_NOW)
    [alert] = store.alerts("900101", lambda urn, envelope: None)
    assert alert.notification is None
    assert "erased" in alert.describe()
    assert "Ivy" not in alert.describe()


def test_inbox_survives_reopening(tmp_path: Path) -> None:
    """Alerts are durable across a consumer restart."""
    path = tmp_path / "inbox.sqlite"
    first = InboxStore(path)
    first.store(_arrival("n1"), received_at=FIXED_NOW)
    first.close()
    assert set(InboxStore(path).received_at(["n1", "n2"])) == {"n1"}


class TestAcknowledging:
    def test_acknowledging_records_who_and_when(self, tmp_path: Path) -> None:
        """The alert then shows as acknowledged, by that staff id in that role, at that time."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store(_arrival("n1"), received_at=FIXED_NOW)
        at = FIXED_NOW + timedelta(hours=11)
        assert store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=at) is True
        [alert] = store.alerts("900101", _open)
        assert alert.acknowledged_at == at
        assert alert.acknowledged_by == Acknowledger(staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT)
        assert "awaiting" not in alert.describe()

    def test_acknowledging_twice_changes_nothing(self, tmp_path: Path) -> None:
        """A double click or resubmitted form is recognised: the second call records nothing."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store(_arrival("n1"), received_at=FIXED_NOW)
        at = FIXED_NOW + timedelta(hours=11)
        assert store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=at)
        assert not store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                                     at=at + timedelta(seconds=1))
        [alert] = store.alerts("900101", _open)
        assert alert.acknowledged_at == at

    def test_the_first_acknowledgement_wins(self, tmp_path: Path) -> None:
        """A deputy acknowledging after the Key Adult does not overwrite who read it first, or when."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store(_arrival("n1"), received_at=FIXED_NOW)
        first = FIXED_NOW + timedelta(hours=11)
        store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=first)
        assert not store.acknowledge("n1", "900101", staff_id="HPS-DEP-1", role=KeyAdultRole.DEPUTY,
                                     at=first + timedelta(minutes=2))
        alert = store.alert("900101", "n1", _open)
        assert alert is not None
        assert alert.acknowledged_by == Acknowledger(staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT)
        assert alert.acknowledged_at == first

    def test_another_setting_cannot_acknowledge(self, tmp_path: Path) -> None:
        """Staff at one school cannot acknowledge (or even find) another school's alert in a shared database."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store(_arrival("n1", "900101"), received_at=FIXED_NOW)
        assert not store.acknowledge("n1", "900105", staff_id="WHS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                                     at=FIXED_NOW)
        assert store.alert("900105", "n1", _open) is None
        [alert] = store.alerts("900101", _open)
        assert alert.acknowledged_at is None
        assert store.acknowledgements_unsent() == []

    def test_an_unknown_alert_cannot_be_acknowledged(self, tmp_path: Path) -> None:
        """Nothing is created for an id that never arrived."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        assert not store.acknowledge("n9", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                                     at=FIXED_NOW)
        assert store.raw_rows() == []

    def test_a_time_without_a_zone_is_refused(self, tmp_path: Path) -> None:
        """Acknowledgement times go to the police as evidence: an ambiguous local time is a bug."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store(_arrival("n1"), received_at=FIXED_NOW)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                              at=FIXED_NOW.replace(tzinfo=None))

    def test_an_acknowledgement_is_reported_until_marked_sent(self, tmp_path: Path) -> None:
        """The outbox lists each acknowledgement whose event has not gone yet, and never one that has."""
        store = InboxStore(tmp_path / "inbox.sqlite")
        store.store_many([_arrival("n1"), _arrival("n2"), _arrival("n3", "900105")], received_at=FIXED_NOW)
        store.acknowledge("n2", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                          at=FIXED_NOW + timedelta(hours=1))
        store.acknowledge("n3", "900105", staff_id="WHS-DEP-1", role=KeyAdultRole.DEPUTY,
                          at=FIXED_NOW + timedelta(hours=2))
        assert [a.notification_id for a in store.acknowledgements_unsent()] == ["n2", "n3"]
        [hollowmere] = store.acknowledgements_unsent("900101")
        assert hollowmere.acknowledged_by == Acknowledger(staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT)
        assert hollowmere.acknowledged_at == FIXED_NOW + timedelta(hours=1)
        store.acknowledgement_sent("n2", at=FIXED_NOW + timedelta(hours=3))
        store.acknowledgement_sent("n1", at=FIXED_NOW + timedelta(hours=3))  # not acknowledged: nothing to mark
        assert [a.notification_id for a in store.acknowledgements_unsent()] == ["n3"]
        store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT,
                          at=FIXED_NOW + timedelta(hours=4))
        assert [a.notification_id for a in store.acknowledgements_unsent()] == ["n3", "n1"]

    def test_acknowledgements_survive_reopening(self, tmp_path: Path) -> None:
        """Who acknowledged, and whether it was reported, are durable across a restart."""
        path = tmp_path / "inbox.sqlite"
        first = InboxStore(path)
        first.store_many([_arrival("n1"), _arrival("n2")], received_at=FIXED_NOW)
        first.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=FIXED_NOW)
        first.acknowledge("n2", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=FIXED_NOW)
        first.acknowledgement_sent("n1", at=FIXED_NOW)
        first.close()
        again = InboxStore(path)
        assert [a.notification_id for a in again.acknowledgements_unsent()] == ["n2"]
        assert all(a.acknowledged_by is not None for a in again.alerts("900101", _open))

    def test_an_inbox_from_before_acknowledgements_is_upgraded_in_place(self, tmp_path: Path) -> None:
        """An inbox file written by the first release keeps its alerts and can record acknowledgements."""
        path = tmp_path / "inbox.sqlite"
        with sqlite3.connect(path) as old:
            old.executescript(
                "CREATE TABLE alerts (notification_id TEXT PRIMARY KEY, setting_urn TEXT NOT NULL, "
                "received_at TEXT NOT NULL, envelope BLOB NOT NULL, acknowledged_at TEXT);"
            )
            old.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, NULL)",
                        ("n1", "900101", FIXED_NOW.isoformat(), _arrival("n1").envelope))
        old.close()
        store = InboxStore(path)
        assert store.acknowledge("n1", "900101", staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT, at=FIXED_NOW)
        [alert] = store.alerts("900101", _open)
        assert alert.notification is not None
        assert alert.acknowledged_by == Acknowledger(staff_id="HPS-DSL-1", role=KeyAdultRole.KEY_ADULT)

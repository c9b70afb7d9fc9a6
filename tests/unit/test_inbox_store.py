"""A school's inbox keeps each alert once, holds no plaintext, and shows erased children as erased."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from safebus.consumers.inbox_store import Arrival, InboxStore
from safebus.schemas._base import event_metadata
from safebus.schemas.encompass import EncompassNotification
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

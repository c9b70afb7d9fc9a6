"""A school's inbox keeps each alert once, however often it is delivered."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from safebus.consumers.inbox_store import InboxStore
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


def test_redelivery_is_stored_once(tmp_path: Path) -> None:
    """The same notification delivered twice appears once, with its first arrival time."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    assert store.store(_notification("n1"), received_at=FIXED_NOW) is True
    assert store.store(_notification("n1"), received_at=FIXED_NOW + timedelta(minutes=5)) is False
    [alert] = store.alerts("900101")
    assert alert.received_at == FIXED_NOW
    assert alert.acknowledged_at is None


def test_each_school_sees_only_its_own_alerts(tmp_path: Path) -> None:
    """One database can host several inboxes without mixing them."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    store.store(_notification("n1", "900101"), received_at=FIXED_NOW)
    store.store(_notification("n2", "900105"), received_at=FIXED_NOW)
    assert [a.notification.notification_id for a in store.alerts("900105")] == ["n2"]
    assert store.alerts("900999") == []


def test_inbox_survives_reopening(tmp_path: Path) -> None:
    """Alerts are durable across a consumer restart."""
    path = tmp_path / "inbox.sqlite"
    first = InboxStore(path)
    first.store(_notification("n1"), received_at=FIXED_NOW)
    first.close()
    assert set(InboxStore(path).received_at(["n1", "n2"])) == {"n1"}

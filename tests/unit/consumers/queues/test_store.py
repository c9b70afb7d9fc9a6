"""A recipient's referral queue keeps each referral once, per agency, sealed, and records one take."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from safebus.consumers.queues.store import NotInQueue, QueueItem, QueueStore, ReferralArrival
from safebus.schemas._base import event_metadata
from safebus.schemas.sharing import Referral
from tests.conftest import FIXED_NOW

CS = "northdale-childrens-services"
IDVA = "northdale-idva"


def _referral(rid: str, recipient: str = CS) -> Referral:
    return Referral(
        **event_metadata(Referral, producer="safebus-router", occurred_at=FIXED_NOW - timedelta(hours=2),
                         recorded_at=FIXED_NOW, event_id=f"00000000-0000-4000-8000-{int(rid[1:]):012d}"),
        referral_id=rid, recipient=recipient, agreement_id="childrens-services-referral", agreement_version="1.0.0",
        clause="1 children-involved", purpose="Let the MASH assess whether children need help or protection.",
        police_reference="NDP-2026-004512", incident_at=FIXED_NOW - timedelta(hours=2),
        released={
            "risk_grade": "high",
            "children_present": True,
            "children": ({"first_name": "Ivy", "surname": "Calloway", "date_of_birth": "2016-03-04",
                          "present": True},),
            "suspects": ({"first_name": "Otis", "surname": "Pemberton", "date_of_birth": None,
                          "relationship": "parents-partner"},),
        },
    )


def _arrival(rid: str, recipient: str = CS) -> ReferralArrival:
    """A stand-in envelope: the referral's JSON reversed (the store must treat it as opaque bytes)."""
    referral = _referral(rid, recipient)
    return ReferralArrival(referral_id=rid, recipient_id=recipient, event_id=referral.event_id,
                           envelope=referral.model_dump_json()[::-1].encode())


def _open(recipient_id: str, envelope: bytes) -> Referral | None:
    return Referral.model_validate_json(envelope.decode()[::-1])


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queues.sqlite")


def test_redelivery_is_stored_once(store: QueueStore) -> None:
    """The same referral delivered twice appears once, with its first arrival time."""
    assert store.store_many([_arrival("r1")], received_at=FIXED_NOW) == 1
    assert store.store_many([_arrival("r1"), _arrival("r2")], received_at=FIXED_NOW + timedelta(minutes=5)) == 1
    items = store.items(CS, _open)
    assert [i.referral_id for i in items] == ["r1", "r2"]
    assert items[0].received_at == FIXED_NOW
    assert items[0].referral is not None
    assert items[0].referral.released["risk_grade"] == "high"
    assert (items[0].taken_at, items[0].taken_by) == (None, None)


def test_each_agency_sees_and_takes_only_its_own_referrals(store: QueueStore) -> None:
    """One database hosts several queues without mixing them; an agency cannot take another's referral."""
    store.store_many([_arrival("r1", CS), _arrival("r2", IDVA)], received_at=FIXED_NOW)
    assert [i.referral_id for i in store.items(IDVA, _open)] == ["r2"]
    assert store.items("northdale-marac", _open) == []
    with pytest.raises(NotInQueue):
        store.take(IDVA, "r1", "IDVA-07", FIXED_NOW)
    assert store.items(CS, _open)[0].taken_at is None


def test_taking_is_recorded_once_and_the_first_take_stands(store: QueueStore) -> None:
    """A second take returns False and changes neither who took it nor when; its receipt falls due once."""
    store.store_many([_arrival("r1")], received_at=FIXED_NOW)
    assert store.take(CS, "r1", "MASH-04", FIXED_NOW + timedelta(minutes=10)) is True
    assert store.take(CS, "r1", "MASH-09", FIXED_NOW + timedelta(minutes=20)) is False
    [item] = store.items(CS, _open)
    assert (item.taken_by, item.taken_at) == ("MASH-04", FIXED_NOW + timedelta(minutes=10))
    [due] = store.receipts_due(CS)
    assert (due.referral_id, due.taken_by, due.event_id) == ("r1", "MASH-04", _referral("r1").event_id)
    store.receipts_sent(CS, ["r1"], at=FIXED_NOW + timedelta(minutes=11))
    assert store.receipts_due(CS) == []
    assert store.take(CS, "r1", "MASH-04", FIXED_NOW + timedelta(minutes=30)) is False
    assert store.receipts_due(CS) == []


def test_taking_an_unknown_referral_is_refused(store: QueueStore) -> None:
    """A mistyped id is an error, not a silent 'already taken'."""
    with pytest.raises(NotInQueue, match="r404"):
        store.take(CS, "r404", "MASH-04", FIXED_NOW)


def test_queue_holds_only_what_arrived_sealed(store: QueueStore) -> None:
    """Nothing the store writes is plaintext: it keeps the envelope bytes as they came."""
    store.store_many([_arrival("r1")], received_at=FIXED_NOW)
    store.take(CS, "r1", "MASH-04", FIXED_NOW)
    cells = [cell for row in store.raw_rows() for cell in row]
    assert cells
    for secret in ("Ivy", "Calloway", "Pemberton", "2016-03-04", "NDP-2026-004512"):
        assert not any(secret in cell for cell in cells), secret


def test_an_erased_referral_shows_as_erased_without_its_data(store: QueueStore) -> None:
    """After a subject's keys are destroyed the referral stays listed (and takeable), with none of its data."""
    store.store_many([_arrival("r1")], received_at=FIXED_NOW)
    [item] = store.items(CS, lambda recipient, envelope: None)
    assert item.referral is None
    text = "\n".join(item.describe())
    assert "erased" in text
    for secret in ("Ivy", "Calloway", "Pemberton", "NDP-2026-004512", "risk_grade", "children"):
        assert secret not in text
    assert store.take(CS, "r1", "MASH-04", FIXED_NOW) is True


def test_describe_says_why_and_lists_exactly_the_released_fields(store: QueueStore) -> None:
    """The practitioner sees agreement, version, clause, purpose, each released field once, and the status."""
    store.store_many([_arrival("r1")], received_at=FIXED_NOW)
    lines = store.items(CS, _open)[0].describe()
    assert "  agreement childrens-services-referral v1.0.0 clause 1 children-involved" in lines
    assert "  purpose: Let the MASH assess whether children need help or protection." in lines
    assert "  risk_grade: high" in lines
    assert "  children_present: yes" in lines
    assert "  children: Ivy Calloway (date of birth 2016-03-04, present yes)" in lines
    assert "  suspects: Otis Pemberton (relationship parents-partner)" in lines
    field_lines = [line.strip().split(":")[0] for line in lines[3:-1]]
    assert field_lines == ["risk_grade", "children_present", "children", "suspects"]
    assert lines[-1] == "  status: awaiting a practitioner"
    store.take(CS, "r1", "MASH-04", FIXED_NOW)
    taken = store.items(CS, _open)[0]
    assert isinstance(taken, QueueItem)
    assert taken.describe()[-1] == "  status: taken by MASH-04 at 2026-11-18 21:30 UTC"


def test_queue_survives_reopening(tmp_path: Path) -> None:
    """Referrals and takes are durable across a consumer restart."""
    path = tmp_path / "queues.sqlite"
    first = QueueStore(path)
    first.store_many([_arrival("r1"), _arrival("r2")], received_at=FIXED_NOW)
    first.take(CS, "r2", "MASH-04", FIXED_NOW)
    first.close()
    again = QueueStore(path)
    assert again.referral_ids(CS) == {"r1", "r2"}
    assert [t.referral_id for t in again.receipts_due(CS)] == ["r2"]

"""
The router loses its disk and still remembers: its state comes back from the changelog topic.

A child moved school; the router's local state is deleted (a new machine, a
lost volume); after the restart the next alert still goes to the new school,
because every state change was published to ``<prefix>.router.state`` with the
event that caused it and is replayed at start-up.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from safebus.assembly import key_service_for, tokeniser_for
from safebus.directory import AgencyKind
from safebus.producers.publisher import AgencyPublisher
from safebus.schemas import education
from safebus.schemas._base import event_metadata
from safebus.schemas.police import Child
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def own_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus of its own: this test stops the router and deletes its state."""
    with running_bus(kafka, tmp_path_factory.mktemp("state"), prefix=f"s{uuid.uuid4().hex[:10]}") as bus:
        yield bus


def test_a_move_survives_the_loss_of_the_routers_disk(own_bus: Bus) -> None:
    """Enrolment change, router state deleted, restart: the next alert still follows the child."""
    bus = own_bus
    directory = bus.store.load_directory()
    school = AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys("school-900101"),
                             kind=AgencyKind.SCHOOL, router=directory.router().public_keys(), names=bus.names,
                             tokeniser=tokeniser_for(bus.settings.state_dir),
                             keys=key_service_for(bus.settings.state_dir))
    now = datetime.now(UTC)
    move = education.EnrolmentChanged(
        **event_metadata(education.EnrolmentChanged, producer="school-900101", occurred_at=now, recorded_at=now),
        child=education.ChildIdentity(first_name="Tamsin", surname="Oakhurst", date_of_birth=date(2016, 10, 10)),
        previous_setting_urn="900101", new_setting_urn="900104", effective_date=now.date(),
        reason=education.MoveReason.MOVED_SCHOOL,
    )
    school.publish([move])
    wait_for(lambda: [r for r in bus.topic(bus.names.router_state) if r.key and r.key.startswith(b"enrolment|")]
             or None, what="the enrolment change on the router-state changelog")

    bus.stop("processor")
    shutil.rmtree(bus.settings.state_dir / "router")  # the disk is gone
    bus.start("processor")

    later = make_incident(Child(first_name="Tamsin", surname="Oakhurst", date_of_birth=date(2016, 10, 10),
                                present=True, school_urn=None))
    bus.publisher().publish([later])
    decision = wait_for(lambda: next(iter(bus.encompass({later.event_id}).values()), None),
                        timeout_s=120, what=f"the alert decided after the restart\n{bus.log('processor')}")
    assert decision.recipient == "school-900104"

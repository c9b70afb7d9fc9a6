"""
The router loses its disk and still remembers: its state comes back from the changelog topic.

A child moved school; the router's local state is deleted (a new machine, a
lost volume); after the restart the next alert still goes to the new school,
because every state change was published to ``<prefix>.router.state`` with the
event that caused it and is replayed at start-up.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from safebus.app.wiring import key_service_for, tokeniser_for
from safebus.consumers.audit.log import read_facts
from safebus.directory import AgencyKind
from safebus.publisher import AgencyPublisher
from safebus.schemas import consent, education
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import StateConflict
from safebus.schemas.police import Adult, AdultRole, Child, Relationship
from tests.integration.conftest import Broker, Bus, make_incident, running_bus, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def own_bus(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """A bus of its own: this test stops the router and deletes its state."""
    with running_bus(kafka, tmp_path_factory.mktemp("state"), prefix=f"s{uuid.uuid4().hex[:10]}") as bus:
        yield bus


def _publisher(bus: Bus, agency: str, kind: AgencyKind) -> AgencyPublisher:
    return AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys(agency), kind=kind,
                           router=bus.store.load_directory().router().public_keys(), names=bus.names,
                           tokeniser=tokeniser_for(bus.settings.state_dir),
                           keys=key_service_for(bus.settings.state_dir))


def _changes_applied(bus: Bus, key: str) -> int:
    """How many changes the router has published for `key` on its state changelog."""
    return sum(1 for r in bus.topic(bus.names.router_state) if r.key == key.encode())


def test_a_move_survives_the_loss_of_the_routers_disk(own_bus: Bus) -> None:
    """Enrolment change, router state deleted, restart: the next alert still follows the child."""
    bus = own_bus
    school = _publisher(bus, "school-900101", AgencyKind.SCHOOL)
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


def test_same_instant_withdrawal_and_move_are_not_lost(own_bus: Bus) -> None:
    """
    A batch export stamps a consent with its withdrawal, and an enrolment with the move away from it, alike:
    the next medium-risk incident is not referred to the hub, the child's alert reaches the new school (though
    the police record still names the old one), and the consent tie is an audit fact.
    """
    bus = own_bus
    tokeniser = tokeniser_for(bus.settings.state_dir)
    victim = Adult(first_name="Maren", surname="Lowther", date_of_birth=date(1990, 2, 14), role=AdultRole.VICTIM,
                   relationship=Relationship.PARENT)
    token = tokeniser.person(first_name=victim.first_name, surname=victim.surname, date_of_birth=victim.date_of_birth)
    at = datetime.now(UTC) - timedelta(hours=2)  # one export: every record has the same timestamps
    common = {"consent_id": "CN-SAME-1", "subject": token, "purpose": "voluntary-sector-referral",
              "recorded_by": {"agency": "northdale-idva", "staff_id": "IDVA-7"}, "how_obtained": "verbal"}
    given = consent.ConsentRecorded.model_validate_json(json.dumps({
        **event_metadata(consent.ConsentRecorded, producer="northdale-idva", occurred_at=at, recorded_at=at),
        **common, "given": True, "recorded_on": at, "scope": {"recipient_kinds": ["da-hub"]}}, default=str))
    withdrawn = consent.ConsentWithdrawn.model_validate_json(json.dumps({
        **event_metadata(consent.ConsentWithdrawn, producer="northdale-idva", occurred_at=at, recorded_at=at),
        **common, "withdrawn_at": at}, default=str))
    child = education.ChildIdentity(first_name="Wren", surname="Lowther", date_of_birth=date(2015, 7, 1))
    enrolled = education.EnrolmentRecorded(
        **event_metadata(education.EnrolmentRecorded, producer="northdale-childrens-services", occurred_at=at,
                         recorded_at=at),
        child=child, setting_urn="900101", from_date=date(2025, 9, 3))
    moved = education.EnrolmentChanged(
        **event_metadata(education.EnrolmentChanged, producer="northdale-childrens-services", occurred_at=at,
                         recorded_at=at),
        child=child, previous_setting_urn="900101", new_setting_urn="900103", effective_date=at.date(),
        reason=education.MoveReason.MOVED_SCHOOL)
    _publisher(bus, "northdale-idva", AgencyKind.IDVA).publish([given, withdrawn])
    _publisher(bus, "northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES).publish([enrolled, moved])

    # Ingress topics are consumed independently: route the incident only once both changes are applied.
    child_token = tokeniser.person(first_name=child.first_name, surname=child.surname,
                                   date_of_birth=child.date_of_birth)
    wait_for(lambda: _changes_applied(bus, f"consent|{token}|voluntary-sector-referral") >= 2 or None,
             what="both consent changes applied (router-state changelog)")
    wait_for(lambda: _changes_applied(bus, f"enrolment|{child_token}") >= 2 or None,
             what="both enrolment changes applied (router-state changelog)")

    incident = make_incident(Child(first_name="Wren", surname="Lowther", date_of_birth=date(2015, 7, 1),
                                   present=True, school_urn="900101"), adults=(victim,))
    bus.publisher().publish([incident])
    decisions = wait_for(lambda: {d.agreement_id: d for d in bus.decisions({incident.event_id}).values()}
                         if len(bus.encompass({incident.event_id})) == 1 and any(
                             d.agreement_id == "domestic-abuse-hub" for d in bus.decisions({incident.event_id})
                             .values()) else None,
                         timeout_s=120, what=f"the incident's decisions\n{bus.log('processor')}")
    hub = decisions["domestic-abuse-hub"]
    assert (hub.clause, hub.outcome.value, hub.recipient) == ("3 consent-withdrawn", "withheld", None)
    assert (hub.consent_purpose, hub.consent_status.value) == ("voluntary-sector-referral", "withdrawn")
    [alert] = bus.encompass({incident.event_id}).values()
    assert alert.recipient == "school-900103"
    notification_id = alert.output_id
    assert notification_id is not None
    wait_for(lambda: bus.alert("900103", notification_id), what="the alert in the new school's inbox")
    assert bus.alert("900101", notification_id) is None, "nothing reaches the school the child has left"

    conflicts = [f for f in read_facts(bus.settings.bootstrap, bus.names.audit, StateConflict).values()
                 if f.subjects == (token,)]
    assert [(c.kind, c.resolved_to, set(c.about_event_ids)) for c in conflicts] == [
        ("consent", "withdrawn", {given.event_id, withdrawn.event_id})]

"""The other recipients' work queues on a real broker: police incident → router → referral queues → receipt."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from safebus.app.queue_wiring import build_queue_worker, open_queue_store, queue_opener, take_referral
from safebus.app.wiring import key_service_for, tokeniser_for
from safebus.consumers.queues.store import QueueItem
from safebus.directory import OnlyFrom
from safebus.envelope import open_envelope
from safebus.errors import InvalidEnvelope
from safebus.processors.agreements import load_agreements
from safebus.publisher import AgencyPublisher
from safebus.records import Record
from safebus.schemas import marac, risk
from safebus.schemas._base import Person as Person_
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.police import Adult, AdultRole, Child, Relationship, RiskGrade
from safebus.schemas.registry import Family
from safebus.schemas.sharing import CaseReferral, Person, Referral, ReferralReceived, ReleasedValue
from tests.integration.conftest import Bus, make_incident, wait_for

pytestmark = pytest.mark.kafka

CS, DA_HUB, IDVA, MARAC = ("northdale-childrens-services", "northdale-da-hub", "northdale-idva",
                           "northdale-marac")


class QueueThread:
    """The queue worker running in a thread of the test process, as ``safebus queue run`` would run it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="queue-worker", daemon=True)

    def _run(self) -> None:
        try:
            # Built in its own thread: the worker's SQLite connection may only be used by the thread that made it.
            build_queue_worker(self.bus.settings).run(self.stop)
        except BaseException as exc:  # surfaced in failure messages, never swallowed silently
            self.errors.append(exc)
            raise

    def describe(self) -> str:
        """State for failure messages."""
        return f"queue worker alive={self.thread.is_alive()} errors={self.errors!r}"


@pytest.fixture(scope="module")
def queues(bus: Bus) -> Iterator[QueueThread]:
    """The bus with the referral-queue worker delivering too."""
    worker = QueueThread(bus)
    worker.thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        worker.thread.join(timeout=30)


def _queue(bus: Bus, recipient_id: str) -> list[QueueItem]:
    store = open_queue_store(bus.settings)
    try:
        return store.items(recipient_id, queue_opener(bus.settings))
    finally:
        store.close()


def _item(bus: Bus, recipient_id: str, referral_id: str) -> QueueItem | None:
    return next((i for i in _queue(bus, recipient_id) if i.referral_id == referral_id and i.referral), None)


def _await_item(bus: Bus, queues: QueueThread, recipient_id: str, referral_id: str) -> QueueItem:
    return wait_for(lambda: _item(bus, recipient_id, referral_id),
                    what=f"{recipient_id}'s referral {referral_id}\n{queues.describe()}")


def _people(value: ReleasedValue) -> tuple[Person, ...]:
    assert isinstance(value, tuple), f"expected released people, got {type(value).__name__}"
    return value


def _receipts(bus: Bus, referral_id: str) -> list[tuple[Record, ReferralReceived]]:
    """Every receipt of `referral_id` on children's services' receipt topic, opened as the router would."""
    directory = bus.store.load_directory()
    router = bus.store.keyring(directory.router().id)
    found = []
    for record in bus.topic(bus.names.ingress(CS, Family.RECEIPT)):
        try:
            opened = open_envelope(record.value, recipient=router, senders=OnlyFrom(directory, CS),
                                   topic=record.topic)
        except InvalidEnvelope:
            continue
        receipt = ReferralReceived.model_validate_json(opened.plaintext)
        if receipt.referral_id == referral_id:
            found.append((record, receipt))
    return found


def test_high_risk_incident_with_children_fills_each_queue_with_exactly_its_clause_fields(
    bus: Bus, queues: QueueThread,
) -> None:
    """
    Children's services, the IDVA and MARAC each get one referral holding exactly the fields of its clause.

    Children's services' clause does not release the victim: her name appears
    nowhere in its referral.  Taking the referral publishes one receipt, sealed
    for the router, on children's services' receipt topic; taking it again
    publishes nothing.
    """
    marker = uuid.uuid4().hex[:8]
    victim = Adult(first_name=f"Victim{marker}", surname=f"Vsurname{marker}", role=AdultRole.VICTIM,
                   relationship=Relationship.PARENT, date_of_birth=date(1989, 4, 12))
    suspect = Adult(first_name=f"Suspect{marker}", surname="Pemberton", role=AdultRole.SUSPECT,
                    relationship=Relationship.PARENTS_PARTNER)
    child = Child(first_name=f"Child{marker}", surname=f"Vsurname{marker}", date_of_birth=date(2016, 9, 1),
                  present=True, school_urn="900101")
    incident = make_incident(child, adults=(victim, suspect), narrative="Synthetic: raised voices, police called.")
    incident = incident.model_copy(update={"risk_grade": RiskGrade.HIGH})
    [event_id] = bus.publisher().publish([incident])

    def shared() -> dict[str, SharingDecision] | None:
        by_agreement = {d.agreement_id: d for d in bus.decisions({event_id}).values()
                        if d.outcome is Outcome.SHARED and d.agreement_id != "operation-encompass"}
        return by_agreement if len(by_agreement) == 3 else None

    decisions = wait_for(shared, what=f"three referral decisions\n{bus.log('processor')}")
    expected = {"childrens-services-referral": CS, "domestic-abuse-hub": IDVA, "marac-referral": MARAC}
    assert {a: d.recipient for a, d in decisions.items()} == expected
    rules = {(a.id, r.clause): r for a in load_agreements() for r in a.rules}

    items: dict[str, QueueItem] = {}
    for agreement_id, recipient in expected.items():
        decision = decisions[agreement_id]
        assert decision.output_id is not None
        items[recipient] = _await_item(bus, queues, recipient, decision.output_id)
        referral = items[recipient].referral
        assert isinstance(referral, Referral)
        assert (referral.agreement_id, referral.agreement_version, referral.clause) == (
            agreement_id, decision.agreement_version, decision.clause)
        rule = rules[(agreement_id, decision.clause.split()[0])]
        assert set(referral.released) == set(rule.fields), recipient
        assert referral.police_reference == incident.police_reference

    cs = items[CS].referral
    assert cs is not None
    assert "victim" not in rules[("childrens-services-referral", "1")].fields
    assert "victim" not in cs.released
    assert victim.first_name not in cs.model_dump_json()
    [released_child] = _people(cs.released["children"])
    assert released_child["first_name"] == child.first_name
    idva = items[IDVA].referral
    assert idva is not None
    assert [v["first_name"] for v in _people(idva.released["victim"])] == [victim.first_name]
    assert "circumstances" not in idva.released
    assert not any(isinstance(i.referral, Referral) and i.referral.police_reference == incident.police_reference
                   for i in _queue(bus, DA_HUB)), "high risk goes to the IDVA, not the consent-based hub route"

    store = open_queue_store(bus.settings)
    try:
        assert not any(victim.first_name in cell or child.first_name in cell
                       for row in store.raw_rows() for cell in row), "the queue database holds no plaintext"
    finally:
        store.close()

    # Taking: one receipt, sealed for the router, on the taker's receipt topic.
    referral_id = items[CS].referral_id
    assert _receipts(bus, referral_id) == []
    first = take_referral(bus.settings, CS, referral_id, "MASH-04")
    assert first.taken is True
    [(record, receipt)] = _receipts(bus, referral_id)
    assert first.receipts == (receipt.event_id,)
    assert record.key == referral_id.encode()
    assert (receipt.recipient, receipt.received_by, receipt.producer) == (CS, "MASH-04", CS)
    assert receipt.correlation_id == cs.event_id
    taken = _item(bus, CS, referral_id)
    assert taken is not None
    assert taken.describe()[-1].startswith("  status: taken by MASH-04 at ")

    again = take_referral(bus.settings, CS, referral_id, "MASH-09")
    assert (again.taken, again.receipts) == (False, ())
    assert len(_receipts(bus, referral_id)) == 1, "taking again publishes nothing new"
    assert queues.thread.is_alive(), queues.describe()


def _agency_publisher(bus: Bus, agency_id: str) -> AgencyPublisher:
    directory = bus.store.load_directory()
    agency = directory.get(agency_id)
    assert agency is not None
    return AgencyPublisher(bootstrap=bus.settings.bootstrap, agency=bus.store.private_keys(agency_id),
                           kind=agency.kind, router=directory.router().public_keys(), names=bus.names,
                           tokeniser=tokeniser_for(bus.settings.state_dir),
                           keys=key_service_for(bus.settings.state_dir))


def test_a_high_dash_and_a_marac_plan_reach_marac_and_the_owning_agency_only(bus: Bus, queues: QueueThread) -> None:
    """An IDVA's DASH of 16 reaches the MARAC coordinator; the plan's police action reaches the police, no one else;
    the school's action is withheld with its reason."""
    now = datetime.now(UTC)
    assessment = risk.RiskAssessmentCompleted(
        **event_metadata(risk.RiskAssessmentCompleted, producer=IDVA, occurred_at=now, recorded_at=now),
        assessment_reference=f"RA-{uuid.uuid4().hex[:8]}", victim=Person_(first_name="Hester", surname="Quayle",
                                                                          date_of_birth=date(1988, 8, 8)),
        tool=risk.AssessmentTool.DASH_SAFELIVES, yes_count=16, level=risk.RiskLevel.HIGH, assessing_agency=IDVA,
        assessed_at=now,
    )
    _agency_publisher(bus, IDVA).publish([assessment])
    decision = wait_for(lambda: next(iter(bus.decisions({assessment.event_id}).values()), None),
                        what="the assessment's decision")
    assert (decision.agreement_id, decision.clause, decision.recipient) == (
        "marac-referral", "5 dash-visible-high-risk", MARAC)
    assert decision.output_id is not None
    item = _await_item(bus, queues, MARAC, decision.output_id)
    assert isinstance(item.referral, CaseReferral)
    assert item.referral.released["yes_count"] == 16

    actions = [marac.MaracActionAssigned(
        **event_metadata(marac.MaracActionAssigned, producer=MARAC, occurred_at=now, recorded_at=now),
        action_id=f"MA-{uuid.uuid4().hex[:6]}-{n}", case_reference="MC-2026-0042", owner_agency=owner,
        description="Flag the address for an urgent response.", due_date=now.date()) for n, owner in
        enumerate(("northdale-police", "school-900101"))]
    _agency_publisher(bus, MARAC).publish(actions)
    police_action, school_action = actions
    to_police = wait_for(lambda: next(iter(bus.decisions({police_action.event_id}).values()), None),
                         what="the police action's decision")
    assert to_police.recipient == "northdale-police"
    assert to_police.output_id is not None
    _await_item(bus, queues, "northdale-police", to_police.output_id)
    to_school = wait_for(lambda: next(iter(bus.decisions({school_action.event_id}).values()), None),
                         what="the school action's decision")
    assert (to_school.outcome, to_school.recipient) == (Outcome.WITHHELD, None)
    assert "Operation Encompass" in to_school.reason
    for other in (CS, DA_HUB, IDVA):
        assert not any(isinstance(i.referral, CaseReferral) and i.referral.reference == police_action.action_id
                       for i in _queue(bus, other))

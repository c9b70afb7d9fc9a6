"""
The audit projection, the audited reader and the exports, over a synthetic ledger.

Every person, agency and token here is synthetic.  `synthetic_log` builds a
November 2026 (plus a little of October) whose monthly figures were worked out
by hand; the expected numbers in `TestMonthlyStatistics` are those sums, not
something computed by the code under test.  The browser test reuses it.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebus.consumers.audit.charts import flows_svg, statistics_svg
from safebus.consumers.audit.exports import chronology_csv, chronology_json, statistics_csv
from safebus.consumers.audit.facts import AUDIT_PRODUCER, leaf_bytes
from safebus.consumers.audit.integrity import check_integrity
from safebus.consumers.audit.ledger import AuditLedger, LogKey, NewFact
from safebus.consumers.audit.projection import (
    UNREADABLE,
    AuditProjection,
    Chronology,
    ChronologyEntry,
    Filters,
    MonthlyStatistics,
    OnTime,
    QueryError,
    ReasonCount,
    month_bounds,
)
from safebus.consumers.audit.reports import AuditedReader, IdentifyingDetails, LedgerViewSink, Viewer
from safebus.pseudonyms import Tokeniser
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.audit import (
    Acknowledged,
    AuditViewed,
    ConflictKind,
    DeadLettered,
    DeadlineSet,
    Delivered,
    DeliveryChannel,
    Escalated,
    StateConflict,
)
from safebus.schemas.audit import EscalationStep as Step
from safebus.schemas.decision import ConsentStatus, Outcome, SharingDecision, SubjectErased

_NS = uuid.UUID("3d7f2a10-5b7e-4c21-9a55-0c1d2e3f4a5b")
ROUTER, NORTH, WEST = "northdale-router", "northdale-police", "westvale-police"
SCHOOL_A, SCHOOL_B, SCHOOL_C = "northdale-hollowmere-primary", "northdale-wrenfield-academy", "westvale-brook-primary"
CHILDRENS, MASH, MARAC = "northdale-childrens-services", "northdale-mash-education-desk", "northdale-marac"
ENCOMPASS = ("operation-encompass", "2.1.0")
ENCOMPASS_LAW = ("UK GDPR Art 6(1)(e) public task", "DPA 2018 Sch 1 para 18 safeguarding of children")
ENCOMPASS_FIELDS = ("child_first_name", "child_surname", "child_date_of_birth", "police_reference", "incident_at",
                    "child_present")


@dataclass(frozen=True)
class Person:
    """A synthetic person: identifying details an officer might type."""

    first_name: str
    surname: str
    date_of_birth: date

    @property
    def details(self) -> IdentifyingDetails:
        """As an officer enters them."""
        return IdentifyingDetails(first_name=self.first_name, surname=self.surname, date_of_birth=self.date_of_birth)


IVY = Person("Ivy", "Calloway", date(2016, 3, 4))
ADA = Person("Ada", "Whitlock", date(2015, 1, 20))
LEO = Person("Leo", "Farrant", date(2017, 6, 11))
MIA = Person("Mia", "Thornbury", date(2013, 9, 2))
OSCAR = Person("Oscar", "Penhale", date(2008, 5, 5))
RHEA = Person("Rhea", "Calloway", date(1990, 2, 14))
PEOPLE = (IVY, ADA, LEO, MIA, OSCAR, RHEA)
TOKENISER = Tokeniser(b"synthetic-test-pseudonymisation-key!")
TOKEN = {p: TOKENISER.person(first_name=p.first_name, surname=p.surname, date_of_birth=p.date_of_birth)
         for p in PEOPLE}


def t(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment in 2026 (UTC; November is GMT, so London time too)."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def uid(name: str) -> str:
    """A deterministic synthetic id."""
    return str(uuid.uuid5(_NS, name))


def decision(name: str, at: datetime, who: Person | None, outcome: Outcome, *, recipient: str | None,
             kind: str, agreement: tuple[str, str] = ENCOMPASS, clause: str = "4.1 notify-setting",
             reason: str = "Notified to the child's setting with the Encompass fields only.",
             producer: str = NORTH, consent: ConsentStatus = ConsentStatus.NOT_SOUGHT,
             fields: tuple[str, ...] = ENCOMPASS_FIELDS, law: tuple[str, ...] = ENCOMPASS_LAW) -> SharingDecision:
    """A sharing decision; shared ones get output id ``uid(name)``."""
    shared = outcome is not Outcome.WITHHELD
    return SharingDecision(
        **event_metadata(SharingDecision, producer=ROUTER, occurred_at=at, recorded_at=at, event_id=uid(f"d-{name}"),
                         subjects=(TOKEN[who],) if who else ()),
        about_event_id=uid(f"incident-{name}"), about_event_type="police.domestic-abuse-incident",
        about_producer=producer, outcome=outcome, purpose="Safeguarding (synthetic)", recipient=recipient,
        recipient_kind=kind, reason=reason, agreement_id=agreement[0], agreement_version=agreement[1], clause=clause,
        lawful_basis=law, consent_status=consent, fields_released=fields if shared else (),
        output_id=uid(name) if shared else None)


def delivered(name: str, at: datetime, recipient: str, *who: Person,
              channel: DeliveryChannel = DeliveryChannel.SCHOOL_INBOX) -> Delivered:
    """The share `name` reached `recipient`."""
    return Delivered(**event_metadata(Delivered, producer=AUDIT_PRODUCER, occurred_at=at, recorded_at=at,
                                      event_id=uid(f"delivered-{name}"), subjects=tuple(TOKEN[p] for p in who)),
                     output_id=uid(name), recipient=recipient, channel=channel, delivered_at=at)


def acknowledged(name: str, at: datetime, urn: str, due: datetime | None) -> Acknowledged:
    """A Key Adult acknowledged notification `name` (the fact names no subject: it is found by notification id)."""
    return Acknowledged(**event_metadata(Acknowledged, producer=SCHOOL_A, occurred_at=at, recorded_at=at,
                                         event_id=uid(f"ack-{name}")),
                        notification_id=uid(name), setting_urn=urn, staff_id=f"{urn}-ka", role="key-adult",
                        acknowledged_at=at, due_by=due)


def dead_letter(n: int, at: datetime, reason: str) -> DeadLettered:
    """A refused input (digest only)."""
    return DeadLettered(**event_metadata(DeadLettered, producer=AUDIT_PRODUCER, occurred_at=at, recorded_at=at,
                                         event_id=uid(f"dlq-{n}")),
                        reason=reason, stage="open", origin_topic="t.ingress.northdale-police.da-incident",
                        origin_partition=0, origin_offset=n, content_sha256=f"{n:064x}")


def synthetic_log() -> list[Event]:
    """
    The facts of a synthetic November 2026, in log order.

    Encompass notifications decided in November: N1 (Ivy, on time), N2 (Ada,
    acknowledged late), N3 (Leo, never acknowledged, escalated), N4 (Mia, no
    deadline known).  N5 (Ivy) was decided in October and is acknowledged in
    November: it belongs to October.
    """
    S, W, D = Outcome.SHARED, Outcome.WITHHELD, Outcome.DEFERRED
    return [
        decision("N5", t(30, 12, month=10), IVY, S, recipient=SCHOOL_A, kind="school"),
        delivered("N5", t(30, 12, 1, month=10), SCHOOL_A, IVY),
        dead_letter(0, t(30, 13, month=10), "bad-signature"),
        acknowledged("N5", t(2, 8, 10), "900101", t(2, 8, 45)),
        decision("N1", t(3, 20), IVY, S, recipient=SCHOOL_A, kind="school"),
        delivered("N1", t(3, 20, 1), SCHOOL_A, IVY),
        decision("R1", t(3, 20), IVY, S, recipient=CHILDRENS, kind="childrens-services",
                 agreement=("childrens-services-referral", "1.0.0"), clause="1 children-involved",
                 reason="Children are involved: the PPN goes to children's services.",
                 fields=("police_reference", "incident_at", "child_first_name")),
        decision("O1", t(3, 20), OSCAR, W, recipient=None, kind="school", clause="3.1 not-a-child",
                 reason="The person was 18 or over on the incident date: Operation Encompass does not apply."),
        decision("V1", t(3, 20), RHEA, W, recipient=None, kind="idva", agreement=("domestic-abuse-hub", "1.0.0"),
                 clause="4 no-consent", reason="Consent to an IDVA referral was not given.",
                 consent=ConsentStatus.REFUSED, law=("UK GDPR Art 6(1)(a) consent",)),
        decision("M1", t(3, 20), RHEA, S, recipient=MARAC, kind="marac", agreement=("marac-referral", "1.0.0"),
                 clause="1 visible-high-risk", reason="Visible high risk: referred to MARAC without consent.",
                 consent=ConsentStatus.REFUSED_OVERRIDDEN, fields=("police_reference", "risk_level"),
                 law=("UK GDPR Art 6(1)(e) public task", "DPA 2018 Sch 1 para 18")),
        delivered("M1", t(3, 20, 5), MARAC, RHEA, IVY, channel=DeliveryChannel.WORK_QUEUE),
        acknowledged("N1", t(4, 8, 30), "900101", t(4, 8, 45)),
        dead_letter(1, t(5, 9), "bad-signature"),
        dead_letter(2, t(6, 9), "bad-signature"),
        dead_letter(3, t(7, 9), "malformed"),
        decision("N2", t(10, 18, 55), ADA, S, recipient=SCHOOL_B, kind="school"),
        delivered("N2", t(10, 19), SCHOOL_B, ADA),
        decision("X1", t(10, 19), None, W, recipient=None, kind="school", clause="1 no-children",
                 reason="No child is linked to the incident: there is no setting to notify."),
        acknowledged("N2", t(11, 10), "900105", t(11, 8, 45)),
        decision("N3", t(12, 21), LEO, S, recipient=SCHOOL_A, kind="school"),
        delivered("N3", t(12, 21, 2), SCHOOL_A, LEO),
        Escalated(**event_metadata(Escalated, producer=AUDIT_PRODUCER, occurred_at=t(13, 9, 15),
                                   recorded_at=t(13, 9, 15), event_id=uid("esc-N3")),
                  notification_id=uid("N3"), setting_urn="900101", step=Step.DEPUTIES, due_by=t(13, 8, 45),
                  notified=("900101-deputy",)),
        decision("O2", t(18, 23), OSCAR, W, recipient=None, kind="school", clause="3.1 not-a-child",
                 reason="The person was 18 or over on the incident date: Operation Encompass does not apply."),
        decision("N6", t(20, 16), IVY, D, recipient=MASH, kind="childrens-services", clause="4.3 setting-unknown",
                 reason="The setting is not on the bus: the MASH education desk resolves it."),
        decision("N4", t(25, 17), MIA, S, recipient=SCHOOL_C, kind="school", producer=WEST),
        delivered("N4", t(25, 17, 1), SCHOOL_C, MIA),
        SubjectErased(**event_metadata(SubjectErased, producer=ROUTER, occurred_at=t(28, 10), recorded_at=t(28, 10),
                                       event_id=uid("erase-mia"), subjects=(TOKEN[MIA],)),
                      subject=TOKEN[MIA], key_ids_destroyed=(f"{TOKEN[MIA]}@2026-11",), requested_by="IG-01",
                      reason="Art 17 request upheld (synthetic)"),
    ]


FACTS = synthetic_log()
IDS_INDEX = {f.event_id: i for i, f in enumerate(FACTS)}
NOW = t(30, 12)
OFFICER = Viewer(user_id="ig-officer-01", role="information-governance")


def new_ledger(path: Path) -> AuditLedger:
    """An empty ledger with a fresh log key."""
    return AuditLedger(path, LogKey("northdale.example/audit", Ed25519PrivateKey.generate()))


def append(ledger: AuditLedger, facts: list[Event], *, now: datetime = NOW) -> list[int]:
    """Append facts as the sequencer would."""
    return ledger.append([NewFact(fact_id=f.event_id, fact_type=f.event_type, body=leaf_bytes(f)) for f in facts],
                         now=now)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[AuditLedger]:
    """The synthetic log in a ledger."""
    opened = new_ledger(tmp_path / "ledger.sqlite")
    append(opened, FACTS)
    yield opened
    opened.close()


@pytest.fixture
def projection(tmp_path: Path, ledger: AuditLedger) -> Iterator[AuditProjection]:
    """The synthetic log, projected."""
    opened = AuditProjection(tmp_path / "projection.sqlite")
    opened.catch_up(ledger)
    yield opened
    opened.close()


def _svg(text: str) -> ET.Element:
    """Parse SVG this code wrote (well-formedness is what is being tested)."""
    return ET.fromstring(text)  # noqa: S314 - our own output, not untrusted input


def ids(rows: list[object]) -> set[str]:
    """The fact ids of rows."""
    return {r.fact_id for r in rows}  # type: ignore[attr-defined]


def d(name: str) -> str:
    """The fact id of decision `name`."""
    return uid(f"d-{name}")


class TestCatchUp:
    def test_projects_every_leaf_once_and_resumes_after_reopening(self, tmp_path: Path, ledger: AuditLedger) -> None:
        """A second catch-up projects nothing; after new leaves, a reopened projection projects only those."""
        path = tmp_path / "p.sqlite"
        projection = AuditProjection(path)
        assert projection.catch_up(ledger) == len(FACTS)
        assert projection.catch_up(ledger) == 0
        assert projection.next_index == len(FACTS)
        projection.close()

        append(ledger, [dead_letter(9, t(29, 9), "malformed")])
        reopened = AuditProjection(path)
        assert reopened.next_index == len(FACTS)
        assert reopened.catch_up(ledger) == 1
        assert reopened.next_index == len(FACTS) + 1
        assert len(reopened.query(Filters(fact_type="audit.dead-lettered", limit=100))) == 5
        reopened.close()

    def test_projecting_a_leaf_again_changes_nothing(self, projection: AuditProjection, ledger: AuditLedger) -> None:
        """Re-projecting every leaf (as after a crash mid-batch) adds no row and keeps the stored index."""
        before = projection.query(Filters(limit=1000))
        leaves = [(leaf.index, leaf.body) for leaf in ledger.leaves()]
        assert projection.project(leaves) == 0
        assert projection.project(leaves[3:5]) == 0
        assert projection.query(Filters(limit=1000)) == before
        assert projection.next_index == len(FACTS)
        assert len(before) == len(FACTS)

    def test_projects_from_a_plain_list_of_leaves(self, tmp_path: Path) -> None:
        """The seam needs no ledger: (index, JSON) pairs, in any batches; unreadable bytes keep their index."""
        projection = AuditProjection(tmp_path / "p.sqlite")
        bodies = [(i, leaf_bytes(f)) for i, f in enumerate(FACTS[:4])]
        assert projection.project(bodies[2:]) == 2
        assert projection.next_index == 0  # leaves 0 and 1 are missing: nothing below 2 may be assumed
        assert projection.project([bodies[0]]) == 1
        assert projection.next_index == 1
        assert projection.project([bodies[1], (4, b"\xff not json")]) == 2
        assert projection.next_index == 5  # 0-4 are all there now, whichever call brought them
        (odd,) = projection.query(Filters(fact_type=UNREADABLE))
        assert odd.index == 4

    def test_refuses_a_ledger_that_skips_an_index(self, tmp_path: Path, ledger: AuditLedger) -> None:
        """A projection ahead of its ledger is a different log: it says so instead of projecting past a gap."""
        projection = AuditProjection(tmp_path / "p.sqlite")
        projection.project([(0, leaf_bytes(FACTS[0]))])
        projection.project([(1, leaf_bytes(FACTS[1]))])
        small = new_ledger(tmp_path / "other.sqlite")
        assert projection.catch_up(small) == 0
        with sqlite3.connect(tmp_path / "other.sqlite") as db:
            db.execute("INSERT INTO leaves VALUES (5, 'x', 'y', X'7B7D', X'00', X'00', '2026-11-30T00:00:00+00:00')")
        with pytest.raises(QueryError, match="skips from leaf 2 to 5"):
            projection.catch_up(small)


QUERY_CASES: list[tuple[Filters, set[str]]] = [
    (Filters(subject=TOKEN[IVY]),
     {d("N5"), d("N1"), d("R1"), d("N6"), uid("delivered-N5"), uid("delivered-N1"), uid("delivered-M1")}),
    (Filters(agency=WEST), {d("N4")}),
    (Filters(recipient=SCHOOL_A),
     {d("N5"), d("N1"), d("N3"), uid("delivered-N5"), uid("delivered-N1"), uid("delivered-N3")}),
    (Filters(agreement="domestic-abuse-hub"), {d("V1")}),
    (Filters(outcome="withheld"), {d("O1"), d("O2"), d("V1"), d("X1")}),
    (Filters(outcome="deferred"), {d("N6")}),
    (Filters(fact_type="audit.acknowledged"), {uid("ack-N5"), uid("ack-N1"), uid("ack-N2")}),
    (Filters(fact_type="audit.dead-lettered", since=t(1, 0), until=t(7, 9)), {uid("dlq-1"), uid("dlq-2")}),
    (Filters(outcome="shared", recipient=SCHOOL_A, since=t(1, 0)), {d("N1"), d("N3")}),
    (Filters(subject=TOKEN[MIA]), {d("N4"), uid("delivered-N4"), uid("erase-mia")}),
]
"""Every filter, alone and combined, with the facts it must select (also run against PostgreSQL)."""


class TestQuery:
    @pytest.mark.parametrize(("filters", "expected"), QUERY_CASES)
    def test_each_filter_selects_exactly_its_facts(self, projection: AuditProjection, filters: Filters,
                                                   expected: set[str]) -> None:
        """Every filter, alone and combined, returns exactly the hand-picked facts."""
        assert ids(projection.query(filters)) == expected  # type: ignore[arg-type]

    def test_newest_first_and_limited(self, projection: AuditProjection) -> None:
        """Results come newest first; `limit` keeps the newest."""
        rows = projection.query(Filters(limit=2))
        assert [r.fact_id for r in rows] == [uid("erase-mia"), uid("delivered-N4")]
        assert rows[0].at == t(28, 10)

    def test_rows_carry_the_decision_columns(self, projection: AuditProjection) -> None:
        """A decision row has its agency (whose event), recipient, agreement, clause, outcome and the fact."""
        (row,) = projection.query(Filters(agreement="marac-referral"))
        assert (row.agency, row.producer, row.recipient, row.recipient_kind) == (NORTH, ROUTER, MARAC, "marac")
        assert (row.agreement_id, row.agreement_version, row.clause, row.outcome) == (
            "marac-referral", "1.0.0", "1 visible-high-risk", "shared")
        assert row.subjects == (TOKEN[RHEA],)
        assert row.fact["consent_status"] == "refused-overridden"

    @pytest.mark.parametrize(("arguments", "message"), [
        ({"outcome": "leaked"}, "unknown outcome"),
        ({"limit": 0}, "limit must be between"),
        ({"limit": 1001}, "limit must be between"),
        ({"since": datetime(2026, 11, 1)}, "need a time zone"),
    ])
    def test_refuses_filters_that_cannot_be_meant(self, arguments: dict[str, object], message: str) -> None:
        """Bad filters are errors, not empty results."""
        with pytest.raises(QueryError, match=message):
            Filters(**arguments)  # type: ignore[arg-type]


class TestChronology:
    def test_everything_about_one_child(self, projection: AuditProjection) -> None:
        """Decisions (shared and deferred), deliveries and an acknowledgement found by notification id, in order."""
        found = projection.chronology(TOKEN[IVY])
        assert [(e.kind, e.outcome, e.fact_id) for e in found.entries] == [
            ("decision", "shared", d("N5")), ("delivered", None, uid("delivered-N5")),
            ("acknowledged", None, uid("ack-N5")),
            ("decision", "shared", d("N1")), ("decision", "shared", d("R1")),
            ("delivered", None, uid("delivered-N1")), ("delivered", None, uid("delivered-M1")),
            ("acknowledged", None, uid("ack-N1")),
            ("decision", "deferred", d("N6")),
        ]
        n1 = found.entries[3]
        assert (n1.by, n1.from_agency, n1.to, n1.recipient_kind) == (ROUTER, NORTH, SCHOOL_A, "school")
        assert (n1.agreement, n1.clause, n1.consent) == ("operation-encompass 2.1.0", "4.1 notify-setting",
                                                         "not-sought")
        assert n1.lawful_basis == ENCOMPASS_LAW
        assert n1.fields_released == ENCOMPASS_FIELDS
        ack = found.entries[7]
        assert ack.output_id == uid("N1")
        assert ack.detail is not None
        assert "due by 2026-11-04T08:45" in ack.detail
        assert found.views == ()

    def test_withheld_decisions_and_why(self, projection: AuditProjection) -> None:
        """A withheld share is in the chronology with clause, reason, consent and no recipient or fields."""
        found = projection.chronology(TOKEN[RHEA])
        withheld, shared = found.decisions
        assert (withheld.outcome, withheld.to, withheld.clause, withheld.consent) == (
            "withheld", None, "4 no-consent", "refused")
        assert withheld.reason == "Consent to an IDVA referral was not given."
        assert withheld.fields_released == ()
        assert (shared.outcome, shared.to, shared.consent) == ("shared", MARAC, "refused-overridden")

    def test_escalation_and_erasure(self, projection: AuditProjection) -> None:
        """An escalation is found through the notification; an erasure through the subject."""
        leo = projection.chronology(TOKEN[LEO])
        assert [e.kind for e in leo.entries] == ["decision", "delivered", "escalated"]
        assert leo.entries[2].detail == ("step deputies, due by 2026-11-13T08:45:00.000000Z, "
                                         "notified 900101-deputy")
        mia = projection.chronology(TOKEN[MIA])
        assert mia.entries[-1].kind == "erased"
        assert mia.entries[-1].reason == "Art 17 request upheld (synthetic)"

    def test_views_of_the_record_are_listed(self, tmp_path: Path, ledger: AuditLedger,
                                            projection: AuditProjection) -> None:
        """Who looked at a person's audit data appears in their chronology, separately from what happened."""
        reader = AuditedReader(projection, record_view=LedgerViewSink(ledger, projection, clock=lambda: NOW),
                               clock=lambda: NOW, channel="test")
        reader.find(OFFICER, RHEA.details, TOKENISER)
        reader.query(Viewer(user_id="auditor-07", role="auditor"), Filters(outcome="withheld"))
        found = projection.chronology(TOKEN[RHEA])
        assert [(v.viewer, v.viewer_role, v.view, v.results) for v in found.views] == [
            ("ig-officer-01", "information-governance", "test/chronology", 3),
            ("auditor-07", "auditor", "test/query", 4),
        ]
        assert found.views[0].parameters == {"subject": TOKEN[RHEA], "identified_by": "name-and-date-of-birth"}
        assert all(e.kind != "audit.viewed" for e in found.entries)
        assert projection.chronology(TOKEN[ADA]).views == ()  # Ada was in no result shown

    def test_refuses_what_is_not_a_token(self, projection: AuditProjection) -> None:
        """A name typed where a token belongs is refused, never searched for."""
        with pytest.raises(QueryError, match="not a subject token"):
            projection.chronology("Ivy Calloway")


class TestFlows:
    def test_counts_by_agency_recipient_agreement_and_outcome(self, projection: AuditProjection) -> None:
        """November's decisions between agencies, most frequent first; October's N5 is outside the window."""
        found = projection.flows(t(1, 0), t(1, 0, month=12))
        assert [(f.agency, f.recipient, f.recipient_kind, f.agreement_id, f.outcome, f.count) for f in found] == [
            (NORTH, None, "school", "operation-encompass", "withheld", 3),
            (NORTH, SCHOOL_A, "school", "operation-encompass", "shared", 2),
            (NORTH, None, "idva", "domestic-abuse-hub", "withheld", 1),
            (NORTH, CHILDRENS, "childrens-services", "childrens-services-referral", "shared", 1),
            (NORTH, MARAC, "marac", "marac-referral", "shared", 1),
            (NORTH, MASH, "childrens-services", "operation-encompass", "deferred", 1),
            (NORTH, SCHOOL_B, "school", "operation-encompass", "shared", 1),
            (WEST, SCHOOL_C, "school", "operation-encompass", "shared", 1),
        ]
        assert next(f.count for f in projection.flows() if f.recipient == SCHOOL_A) == 3


class TestMonthlyStatistics:
    def test_november_figures_match_the_hand_count(self, projection: AuditProjection) -> None:
        """
        Sent 4 (N1-N4); delivered 4, on time 3 (N4 has no known deadline); acknowledged 2 (N1, N2),
        on time 1 (N1), late 2 (N2 at 10:00 against 08:45; N3 never), unknown 1 (N4); median wait
        (12:29 + 15:00) / 2 = 13:44:30; N5 (decided in October) is not counted.
        """
        stats = projection.monthly_statistics("2026-11")
        assert (stats.notifications_sent, stats.delivered, stats.acknowledged) == (4, 4, 2)
        assert stats.delivered_on_time == OnTime(on_time=3, late=0, unknown=1)
        assert stats.acknowledged_on_time == OnTime(on_time=1, late=2, unknown=1)
        assert stats.acknowledged_on_time.rate == pytest.approx(1 / 3)
        assert stats.median_time_to_acknowledge == timedelta(hours=13, minutes=44, seconds=30)
        by_setting = {s.recipient: s for s in stats.by_setting}
        assert stats.by_setting[0].recipient == SCHOOL_A  # most notifications first
        assert (by_setting[SCHOOL_A].sent, by_setting[SCHOOL_A].acknowledged) == (2, 1)
        assert by_setting[SCHOOL_A].acknowledged_on_time == OnTime(on_time=1, late=1, unknown=0)
        assert by_setting[SCHOOL_B].acknowledged_on_time == OnTime(on_time=0, late=1, unknown=0)
        assert by_setting[SCHOOL_C].acknowledged_on_time == OnTime(on_time=0, late=0, unknown=1)
        assert stats.withheld_by_reason == (
            ReasonCount(agreement_id="operation-encompass", clause="3.1 not-a-child", count=2,
                        reason="The person was 18 or over on the incident date: Operation Encompass does not apply."),
            ReasonCount(agreement_id="domestic-abuse-hub", clause="4 no-consent", count=1,
                        reason="Consent to an IDVA referral was not given."),
            ReasonCount(agreement_id="operation-encompass", clause="1 no-children", count=1,
                        reason="No child is linked to the incident: there is no setting to notify."),
        )
        assert stats.dead_letters_by_reason == (ReasonCount(reason="bad-signature", count=2),
                                                ReasonCount(reason="malformed", count=1))

    def test_october_and_an_empty_month(self, projection: AuditProjection) -> None:
        """October has N5 (on time, acknowledged in November); December has nothing, and rates are unknown."""
        october = projection.monthly_statistics("2026-10")
        assert (october.notifications_sent, october.acknowledged, october.acknowledged_on_time.on_time) == (1, 1, 1)
        assert october.median_time_to_acknowledge == timedelta(days=2, hours=20, minutes=9)
        assert october.dead_letters_by_reason == (ReasonCount(reason="bad-signature", count=1),)
        december = projection.monthly_statistics("2026-12")
        assert december.notifications_sent == 0
        assert december.acknowledged_on_time.rate is None
        assert december.median_time_to_acknowledge is None

    def test_months_follow_london_time(self) -> None:
        """October 2026 starts at 23:00 UTC on 30 September (BST) and ends at midnight GMT on 1 November."""
        start, end = month_bounds("2026-10")
        assert (start.astimezone(UTC), end.astimezone(UTC)) == (datetime(2026, 9, 30, 23, tzinfo=UTC), t(1, 0))
        start, end = month_bounds("2026-12")
        assert (start.astimezone(UTC), end.astimezone(UTC)) == (t(1, 0, month=12), datetime(2027, 1, 1, tzinfo=UTC))
        with pytest.raises(QueryError, match="not a month"):
            month_bounds("2026-13")


class TestAuditedReader:
    def reader(self, views: list[AuditViewed], projection: AuditProjection) -> AuditedReader:
        """A reader recording into `views`."""
        return AuditedReader(projection, record_view=views.append, clock=lambda: NOW, channel="cli")

    def test_every_read_records_one_view_with_tokens_only(self, projection: AuditProjection,
                                                          ledger: AuditLedger) -> None:
        """Each method records exactly one view: its name, parameters, result count and the subjects shown."""
        views: list[AuditViewed] = []
        reader = self.reader(views, projection)
        rows = reader.query(OFFICER, Filters(recipient=SCHOOL_A, since=t(1, 0)))
        reader.find(OFFICER, IVY.details, TOKENISER)
        reader.chronology(OFFICER, TOKEN[LEO])
        reader.flows(OFFICER, since=t(1, 0))
        reader.monthly_statistics(OFFICER, "2026-11")
        reader.chronology_csv(OFFICER, TOKEN[IVY], names=IVY.details.names(TOKENISER),
                              identified_by="name-and-date-of-birth")
        reader.chronology_json(OFFICER, TOKEN[IVY])
        reader.statistics_csv(OFFICER, "2026-11")
        reader.statistics_svg(OFFICER, "2026-11")
        reader.integrity(OFFICER, ledger)
        assert [(v.view, v.results) for v in views] == [
            ("cli/query", len(rows)), ("cli/chronology", 9), ("cli/chronology", 3), ("cli/flows", 8),
            ("cli/statistics", 1), ("cli/chronology-export-csv", 9), ("cli/chronology-export-json", 9),
            ("cli/statistics-export-csv", 1), ("cli/statistics-export-svg", 1), ("cli/integrity", 0),
        ]
        assert len(rows) == 4
        assert views[0].subjects == (TOKEN[LEO], TOKEN[IVY])  # whose records the query showed
        assert views[0].parameters == {"recipient": SCHOOL_A, "since": "2026-11-01T00:00:00.000000Z", "limit": "100"}
        assert views[1].subjects == (TOKEN[IVY],)
        assert all(v.viewer == "ig-officer-01" and v.viewer_role == "information-governance" for v in views)
        everything = "".join(v.model_dump_json() for v in views)
        for person in PEOPLE:
            assert person.first_name not in everything
            assert person.surname not in everything
            assert person.date_of_birth.isoformat() not in everything

    def test_nothing_is_returned_when_the_view_cannot_be_recorded(self, projection: AuditProjection) -> None:
        """If recording fails, the caller gets the error, not the data."""
        def broken(fact: AuditViewed) -> None:
            raise ConnectionError("audit topic unavailable")

        reader = AuditedReader(projection, record_view=broken, clock=lambda: NOW, channel="cli")
        with pytest.raises(ConnectionError):
            reader.chronology(OFFICER, TOKEN[IVY])


class TestExports:
    def test_chronology_csv_names_only_the_person_searched_for(self, projection: AuditProjection) -> None:
        """The searched person shows as entered; a co-subject (Ivy on Rhea's MARAC delivery) stays a token."""
        found = projection.chronology(TOKEN[RHEA])
        text = chronology_csv(found, names=RHEA.details.names(TOKENISER))
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["kind"] for r in rows] == ["decision", "decision", "delivered"]
        assert rows[0]["clause"] == "4 no-consent"
        assert rows[0]["outcome"] == "withheld"
        assert rows[1]["lawful_basis"] == "UK GDPR Art 6(1)(e) public task; DPA 2018 Sch 1 para 18"
        assert rows[2]["subjects"] == f"Rhea Calloway (born 1990-02-14); {TOKEN[IVY]}"
        assert "Ivy" not in text
        assert rows[0]["leaf_index"] == str(IDS_INDEX[d("V1")])

    def test_chronology_json_for_a_review_panel(self, projection: AuditProjection) -> None:
        """JSON carries the subject (named only when given), every entry with its leaf index, and the views."""
        found = projection.chronology(TOKEN[IVY])
        named = json.loads(chronology_json(found, names=IVY.details.names(TOKENISER), generated_at=NOW,
                                           generated_by=OFFICER))
        assert named["format"] == "safebus-chronology/1"
        assert named["subject"] == {"token": TOKEN[IVY], "name": "Ivy Calloway (born 2016-03-04)"}
        assert [e["leaf_index"] for e in named["entries"]] == [e.index for e in found.entries]
        assert named["entries"][3]["fields_released"] == list(ENCOMPASS_FIELDS)
        anonymous = chronology_json(found)
        assert json.loads(anonymous)["subject"] == {"token": TOKEN[IVY]}
        assert "Ivy" not in anonymous
        assert "Calloway" not in anonymous

    def test_no_export_names_anyone_unless_asked(self, projection: AuditProjection) -> None:
        """Without identifying details, no export holds any synthetic person's name or date of birth."""
        texts = [chronology_csv(projection.chronology(TOKEN[p])) + chronology_json(projection.chronology(TOKEN[p]))
                 for p in PEOPLE]
        stats = projection.monthly_statistics("2026-11")
        texts += [statistics_csv(stats), statistics_svg(stats), flows_svg(projection.flows())]
        blob = "".join(texts)
        for person in PEOPLE:
            for detail in (person.first_name, person.surname, person.date_of_birth.isoformat()):
                assert detail not in blob

    def test_csv_cells_cannot_become_formulas(self) -> None:
        """A cell a spreadsheet would evaluate is prefixed with a quote."""
        entry = ChronologyEntry(index=0, fact_id="f", kind="decision", at=NOW, reason="=HYPERLINK(\"x\")")
        text = chronology_csv(Chronology(subject=TOKEN[IVY], entries=(entry,), views=()))
        (row,) = csv.DictReader(io.StringIO(text))
        assert row["reason"] == "'=HYPERLINK(\"x\")"

    def test_statistics_csv(self, projection: AuditProjection) -> None:
        """The CSV parses and carries the hand-counted figures."""
        rows = list(csv.DictReader(io.StringIO(statistics_csv(projection.monthly_statistics("2026-11")))))
        values = {(r["section"], r["measure"]): r["value"] for r in rows}
        assert values[("encompass", "notifications sent")] == "4"
        assert values[("encompass", "acknowledged on-time rate")] == "33.3%"
        assert values[("encompass", "median time to acknowledge")] == "13:44:30"
        assert values[("withheld", "operation-encompass 3.1 not-a-child")] == "2"
        assert values[("dead letters", "bad-signature")] == "2"
        december = list(csv.DictReader(io.StringIO(statistics_csv(projection.monthly_statistics("2026-12")))))
        assert {(r["measure"], r["value"]) for r in december} >= {("acknowledged on-time rate", "unknown"),
                                                                  ("median time to acknowledge", "unknown")}

    def test_svgs_are_well_formed_and_titled(self, projection: AuditProjection) -> None:
        """Both charts parse as XML, have a title and a description with the figures, and label every bar."""
        ns = "{http://www.w3.org/2000/svg}"
        chart = _svg(statistics_svg(projection.monthly_statistics("2026-11")))
        assert chart.tag == f"{ns}svg"
        assert chart.get("role") == "img"
        assert chart.findtext(f"{ns}title") == "Audit statistics for 2026-11"
        assert "4 Operation Encompass notifications sent" in (chart.findtext(f"{ns}desc") or "")
        labels = [el.text for el in chart.iter(f"{ns}text")]
        assert "Acknowledged on time" in labels
        assert "bad-signature" in labels
        diagram = _svg(flows_svg(projection.flows()))
        assert diagram.findtext(f"{ns}title") == "Flows between agencies"
        assert f"{NORTH} to {MARAC}: 1 shared" in (diagram.findtext(f"{ns}desc") or "")

    def test_svg_text_is_escaped(self) -> None:
        """Markup in a label is text, not markup."""
        from safebus.consumers.audit.projection import Flow

        svg = flows_svg([Flow(agency="a<script>", recipient="b&c", recipient_kind="x", agreement_id="g",
                              outcome="shared", count=1)])
        root = _svg(svg)
        assert "<script>" not in svg
        assert "a<script>" in [el.text for el in root.iter("{http://www.w3.org/2000/svg}text")]


class TestIntegrity:
    def test_a_changed_byte_is_named_by_leaf_index(self, tmp_path: Path, ledger: AuditLedger) -> None:
        """The ledger verifies; after one byte of a leaf changes, the check names that leaf and signs nothing."""
        fine = check_integrity(ledger, now=NOW)
        assert fine.verified
        assert fine.leaves_checked == len(FACTS)
        assert ledger.checkpoints() == []  # a read-only check signs no checkpoint
        index = IDS_INDEX[d("O1")]
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            (body,) = db.execute("SELECT body FROM leaves WHERE idx = ?", (index,)).fetchone()
            db.execute("UPDATE leaves SET body = ? WHERE idx = ?", (bytes(body).replace(b"18 or over", b"19 or over"),
                                                                    index))
        broken = check_integrity(ledger, now=NOW)
        assert not broken.verified
        assert broken.first_bad_leaf == index
        assert any(p.index == index and "altered" in p.what for p in broken.problems)



class TestOfficers:
    def test_accounts_hold_hashes_and_changes_end_sessions(self, tmp_path: Path) -> None:
        """A wrong password or unknown id gets None; the file is 0600 without the password; a role change
        gives a new credential version (so existing sessions end)."""
        from safebus.consumers.audit.officers import OfficerRole, Officers
        from safebus.errors import ConfigError

        path = tmp_path / "officers.json"
        officers = Officers(path)
        added = officers.add("ig-01", role=OfficerRole.INFORMATION_GOVERNANCE, display_name="IG (synthetic)",
                             password="a synthetic passphrase")
        assert path.stat().st_mode & 0o777 == 0o600
        assert "a synthetic passphrase" not in path.read_text()
        assert officers.authenticate("ig-01", "a synthetic passphrase") == added
        assert officers.authenticate("ig-01", "wrong synthetic passphrase") is None
        assert officers.authenticate("nobody", "a synthetic passphrase") is None
        demoted = officers.set_role("ig-01", OfficerRole.AUDITOR)
        assert demoted.role is OfficerRole.AUDITOR
        assert demoted.credential_version != added.credential_version
        with pytest.raises(ConfigError, match="at least 12"):
            officers.add("au-01", role=OfficerRole.AUDITOR, display_name="A", password="short")


def test_the_monitors_deadline_makes_an_unread_alert_count_as_late(tmp_path: Path) -> None:
    """N4 had no known deadline; once the monitor's deadline fact is in the log, its silence counts as late."""
    ledger = new_ledger(tmp_path / "ledger.sqlite")
    deadline = DeadlineSet(
        **event_metadata(DeadlineSet, producer="safebus-encompass-monitor", occurred_at=t(25, 17, 2),
                         recorded_at=t(25, 17, 2), event_id=uid("deadline-N4"), subjects=(TOKEN[MIA],)),
        notification_id=uid("N4"), setting_urn="900103", desk="setting", due_by=t(26, 8, 45),
        calendar_version="sha256:synthetic")
    append(ledger, [*FACTS, deadline])
    projection = AuditProjection(tmp_path / "projection.sqlite")
    projection.catch_up(ledger)
    stats = projection.monthly_statistics("2026-11")
    assert stats.acknowledged_on_time == OnTime(on_time=1, late=3, unknown=0)
    chronology = projection.chronology(TOKEN[MIA])
    assert any(e.kind == "deadline" and "2026-11-26T08:45" in (e.detail or "") for e in chronology.entries)


def _deadline(name: str, due: datetime, late: int | None, urn: str) -> DeadlineSet:
    """The monitor's deadline fact for notification `name`, with the police's lateness (None: unknown)."""
    shared = next(f for f in FACTS if f.event_id == uid(f"d-{name}")).occurred_at
    police_due = None if late is None else shared - timedelta(minutes=late)
    return DeadlineSet(
        **event_metadata(DeadlineSet, producer="safebus-encompass-monitor", occurred_at=shared, recorded_at=shared,
                         event_id=uid(f"deadline-{name}")),
        notification_id=uid(name), setting_urn=urn, desk="setting", due_by=due, calendar_version="sha256:synthetic",
        incident_at=None if late is None else shared - timedelta(hours=3), police_due_by=police_due,
        shared_at=shared, shared_late_minutes=late)


def _conflict(name: str, at: datetime, who: Person, values: tuple[str, str], resolved: str) -> StateConflict:
    kind = ConflictKind.CONSENT if resolved in ("given", "refused", "withdrawn") else ConflictKind.ENROLMENT
    return StateConflict(
        **event_metadata(StateConflict, producer=ROUTER, occurred_at=at, recorded_at=at + timedelta(days=1),
                         event_id=uid(f"conflict-{name}"), subjects=(TOKEN[who],)),
        kind=kind, purpose="voluntary-sector-referral" if kind is ConflictKind.CONSENT else None, ordering_point=at,
        about_event_ids=(uid(f"{name}-a"), uid(f"{name}-b")), values=values, resolved_to=resolved)


class TestPoliceLatenessAndConflicts:
    """
    November with the monitor's deadline facts: the police shared N1 on time, N2 95 and N3 30 minutes late;
    N4's deadline fact (1.0.0-like) carries no lateness.  Two state conflicts: a consent tie on 9 November,
    an enrolment tie on 2 December.
    """

    @pytest.fixture
    def stats(self, tmp_path: Path) -> MonthlyStatistics:
        """The November figures of that log."""
        ledger = new_ledger(tmp_path / "ledger.sqlite")
        append(ledger, [*FACTS,
                        _deadline("N1", t(4, 8, 45), 0, "900101"), _deadline("N2", t(11, 8, 45), 95, "900105"),
                        _deadline("N3", t(13, 8, 45), 30, "900101"), _deadline("N4", t(26, 8, 45), None, "900103"),
                        _conflict("c1", t(9, 12), RHEA, ("given", "withdrawn"), "withdrawn"),
                        _conflict("c2", t(2, 9, month=12), IVY, ("900101", "900104"), "unresolved")])
        projection = AuditProjection(tmp_path / "projection.sqlite")
        projection.catch_up(ledger)
        found = projection.monthly_statistics("2026-11")
        projection.close()
        ledger.close()
        return found

    def test_the_polices_side_is_counted_next_to_the_schools(self, stats: MonthlyStatistics) -> None:
        """1 on time, 2 late, 1 unknown; median lateness (95 + 30) / 2; per setting the same split."""
        assert stats.police_shared_on_time == OnTime(on_time=1, late=2, unknown=1)
        assert stats.median_minutes_shared_late == pytest.approx(62.5)
        by_setting = {s.recipient: s.police_shared_on_time for s in stats.by_setting}
        assert by_setting == {SCHOOL_A: OnTime(on_time=1, late=1, unknown=0),
                              SCHOOL_B: OnTime(on_time=0, late=1, unknown=0),
                              SCHOOL_C: OnTime(on_time=0, late=0, unknown=1)}
        assert stats.acknowledged_on_time == OnTime(on_time=1, late=3, unknown=0)  # the schools' side, unchanged

    def test_the_months_state_conflicts_are_listed(self, stats: MonthlyStatistics) -> None:
        """Only the conflict whose instant is in November, with what each change said and what stood."""
        [conflict] = stats.state_conflicts
        assert (conflict.kind, conflict.purpose, conflict.values, conflict.resolved_to, conflict.changes) == (
            "consent", "voluntary-sector-referral", ("given", "withdrawn"), "withdrawn", 2)
        assert (conflict.ordering_point, conflict.recorded_at, conflict.subjects) == (t(9, 12), t(10, 12),
                                                                                     (TOKEN[RHEA],))

    def test_the_csv_and_the_chart_carry_them(self, stats: MonthlyStatistics) -> None:
        """The export has the police rows and the conflict; the chart's description says both."""
        rows = {(r["section"], r["measure"]): r for r in csv.DictReader(io.StringIO(statistics_csv(stats)))}
        assert rows[("police", "shared on time")]["value"] == "1"
        assert rows[("police", "shared late")]["value"] == "2"
        assert rows[("police", "median minutes shared late")]["value"] == "62"
        assert rows[("state conflicts", "count")]["value"] == "1"
        assert rows[("state conflicts", f"consent at {t(9, 12).isoformat()}")]["value"] == "withdrawn"
        description = _svg(statistics_svg(stats)).find("{http://www.w3.org/2000/svg}desc")
        assert description is not None
        assert "The police shared 1 on time and 2 late (unknown for 1). 1 state conflicts." in (description.text or "")
        assert "Rhea" not in statistics_csv(stats)

    def test_the_dashboard_page_shows_them(self, stats: MonthlyStatistics) -> None:
        """The statistics page puts the police's figures beside the acknowledgements and lists the conflict."""
        page = _statistics_page(stats)
        assert "1 on time, 2 late,\n        unknown for 1 (on-time rate 33.3%)" in page
        assert 'id="police-on-time"' in page
        assert "State conflicts: changes stamped with the same instant that disagreed (1)" in page
        assert "given / withdrawn" in page
        assert TOKEN[RHEA] in page

    def test_the_dashboard_page_shows_the_median_wait_as_a_reader_would_say_it(
            self, stats: MonthlyStatistics) -> None:
        """A span in hours and minutes, not a raw ``H:MM:SS.ffffff`` timedelta."""
        page = _statistics_page(replace(stats, median_time_to_acknowledge=timedelta(hours=13, minutes=44,
                                                                                      seconds=30, microseconds=7)))
        assert "13 h 44 min" in page
        assert "13:44:30" not in page


def _statistics_page(stats: MonthlyStatistics) -> str:
    """The statistics template rendered as the dashboard renders it (its environment, its filters)."""
    from zoneinfo import ZoneInfo

    from safebus.consumers.web.pages import Principal
    from safebus.consumers.web.rendering import template_environment

    template = template_environment(ZoneInfo("Europe/London")).get_template("audit/statistics.html")
    return template.render(stats=stats, month=stats.month, chart="", error=None, nav="statistics",
                           site_title="Audit", home="/", footer="", csrf_field="csrf", csrf_token="x",
                           principal=Principal(user_id="ig-1", display_name="IG officer",
                                               roles=frozenset({"auditor"}), scope="partnership"))

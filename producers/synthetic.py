"""
Synthetic partnerships, incidents and corrupted events for the demo, tests and benchmarks.

Everything here is invented.  The borough ("Northdale"), its police force and
schools do not exist; school URNs are drawn from 900000-999999, a range the
DfE has not issued; police references use the force code ``NDP``.  Names are
random pairings from short lists, attached to no real person.  Never feed real
data through these generators' callers.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta

from safebus.clock import utc_now
from safebus.directory import AgencyKind, Contact, Directory, PartnershipStore, new_entry, sign_entry
from safebus.envelope import seal, seal_event
from safebus.fact_signing import Service
from safebus.keys import PrivateKeys, PublicKeys
from safebus.producers.police import PolicePublisher
from safebus.records import EVENT_ID, Output
from safebus.schemas import police
from safebus.schemas._base import event_metadata

__all__ = [
    "HOUSEHOLD_KINDS",
    "NOT_ONBOARDED_URNS",
    "OTHER_AGENCIES",
    "PARTNERSHIP",
    "POLICE_ID",
    "ROUTER_ID",
    "SCHOOLS",
    "IncidentFactory",
    "corrupted_records",
    "create_partnership",
]

POLICE_ID = "northdale-police"
ROUTER_ID = "safebus-router"
PARTNERSHIP = "Northdale Safeguarding Partnership (synthetic)"

SCHOOLS = (
    ("school-900101", "900101", "Hollowmere Primary School", range(4, 11)),
    ("school-900102", "900102", "Larkspur Vale Academy", range(11, 18)),
    ("school-900103", "900103", "Quillon Street Infant School", range(4, 7)),
    ("school-900104", "900104", "Tamsin Brook Junior School", range(7, 11)),
    ("school-900105", "900105", "Wrenfield High School", range(11, 16)),
    ("school-900106", "900106", "Oxmoor Sixth Form College", range(16, 18)),
)
"""(agency id, URN, name, ages taught) of each synthetic partnership school."""
OTHER_AGENCIES = (
    ("northdale-childrens-services", AgencyKind.CHILDRENS_SERVICES, "Northdale Children's Services & MASH (synthetic)"),
    ("northdale-da-hub", AgencyKind.DA_HUB, "Northdale Domestic Abuse Hub (synthetic)"),
    ("northdale-idva", AgencyKind.IDVA, "Northdale IDVA Service (synthetic)"),
    ("northdale-marac", AgencyKind.MARAC, "Northdale MARAC Coordinator (synthetic)"),
    ("northdale-health", AgencyKind.HEALTH, "Northdale 0-19 Health Service (synthetic)"),
)
"""The partnership's other agencies: they publish and will receive as routing grows."""
NOT_ONBOARDED_URNS = ("900901", "900902")
"""Settings a child may attend that have not joined the partnership's directory."""

_FIRST = ("Ava", "Noah", "Isla", "Leo", "Maya", "Arlo", "Ruby", "Ezra", "Nell", "Otis", "Ivy", "Jude", "Elsie",
          "Rory", "Cora", "Alfie", "Mabel", "Finn", "Thea", "Reuben", "Wren", "Ned", "Esme", "Kit")
_SURNAMES = ("Ashcombe", "Brindley", "Calloway", "Dunmore", "Elsworth", "Fairbrook", "Garside", "Holloway",
             "Ingleby", "Jessop", "Kettering", "Lowther", "Marchetti", "Nettleford", "Oakridge", "Pemberton",
             "Quarrie", "Redfern", "Stanwick", "Thackray", "Umbers", "Varley", "Whitlock", "Yardley")
_NARRATIVES = (
    "Verbal argument escalated; neighbour called police. Suspect left before officers arrived.",
    "Victim reports controlling behaviour and threats; property damaged in the kitchen.",
    "Third-party call reporting shouting; both adults spoken to separately.",
    "Suspect arrested at scene for common assault; victim declined medical attention.",
)


def create_partnership(store: PartnershipStore, *, now: datetime | None = None) -> Directory:
    """
    Create the partnership root key, keys for every synthetic agency, and the signed directory.

    The partnership's own services get directory entries too (kind ``service``):
    their keys sign the audit facts they publish (`safebus.fact_signing`).
    """
    moment = now or utc_now()
    root = store.create_root()
    agencies: list[tuple[str, AgencyKind, str, str | None, tuple[Contact, ...]]] = [
        (POLICE_ID, AgencyKind.POLICE, "Northdale Police (synthetic)", None, ()),
        (ROUTER_ID, AgencyKind.ROUTER, "safebus router", None, ()),
        *((service.agency_id, AgencyKind.SERVICE, f"safebus {service.value}", None, ()) for service in Service),
        *((agency_id, kind, name, None, ()) for agency_id, kind, name in OTHER_AGENCIES),
        *((agency_id, AgencyKind.SCHOOL, name, urn,
           (Contact(name=f"Key Adult, {name}", role="designated safeguarding lead",
                    email=f"dsl@{agency_id}.example"),))
          for agency_id, urn, name, _ages in SCHOOLS),
    ]
    signed = []
    for agency_id, kind, name, urn, contacts in agencies:
        keys = PrivateKeys.generate(agency_id)
        store.save_private_keys(keys)
        entry = new_entry(keys, kind=kind, name=name, urn=urn, now=moment, contacts=contacts)
        signed.append(sign_entry(entry, root))
    store.save_entries(PARTNERSHIP, signed)
    return store.load_directory(now=moment)


HOUSEHOLD_KINDS = ("schools", "school-unknown", "not-onboarded", "adults-only", "young-adult")
"""Household shapes: children at partnership schools, at an unknown or non-partner setting, none, or 18+."""
_HOUSEHOLD_WEIGHTS = (55, 15, 8, 15, 7)


class IncidentFactory:
    """Generates plausible, fictional domestic-abuse incidents."""

    def __init__(self, rng: random.Random, *, now: datetime) -> None:
        """Incidents happen in the 48 hours before `now`."""
        self.rng = rng
        self.now = now

    def household_kind(self) -> str:
        """Draw a household shape with realistic weights."""
        return self.rng.choices(HOUSEHOLD_KINDS, weights=_HOUSEHOLD_WEIGHTS)[0]

    def incident(self, kind: str | None = None) -> police.DomesticAbuseIncident:
        """Generate one incident of household `kind` (random if None)."""
        kind = kind or self.household_kind()
        rng = self.rng
        incident_at = self.now - timedelta(minutes=rng.randint(30, 48 * 60))
        surname = rng.choice(_SURNAMES)
        adults = (
            police.Adult(first_name=rng.choice(_FIRST), surname=surname, date_of_birth=self._dob(incident_at, 22, 50),
                         role=police.AdultRole.VICTIM, relationship=police.Relationship.PARENT),
            police.Adult(first_name=rng.choice(_FIRST), surname=rng.choice(_SURNAMES),
                         date_of_birth=self._dob(incident_at, 22, 55), role=police.AdultRole.SUSPECT,
                         relationship=rng.choice([police.Relationship.PARENT, police.Relationship.PARENTS_PARTNER])),
        )
        children: list[police.Child] = []
        if kind != "adults-only":
            for _ in range(rng.randint(1, 3)):
                children.append(self._child(surname, incident_at, kind))
        if kind == "young-adult":
            children.append(police.Child(first_name=rng.choice(_FIRST), surname=surname,
                                         date_of_birth=self._dob(incident_at, 18, 19), present=True, school_urn=None))
        crime = rng.random() < 0.58  # about 42% of police-recorded DA is non-crime (ONS, year to March 2021)
        meta = event_metadata(
            police.DomesticAbuseIncident, producer=POLICE_ID, occurred_at=incident_at,
            recorded_at=incident_at + timedelta(minutes=rng.randint(20, 240)),
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        )
        return police.DomesticAbuseIncident(
            **meta,
            police_reference=f"NDP-{incident_at.year}-{rng.randint(0, 999_999):06d}",
            incident_at=incident_at,
            attended_at=incident_at + timedelta(minutes=rng.randint(8, 90)),
            crime_status=police.CrimeStatus.CRIME if crime else police.CrimeStatus.NON_CRIME,
            offence_codes=(rng.choice(("8N/01", "105/01", "149/00", "58C/01")),) if crime else (),
            adults=adults,
            children=tuple(children),
            narrative=rng.choice(_NARRATIVES),
            risk_grade=rng.choice(list(police.RiskGrade)),
            risk_tool=rng.choice(list(police.RiskTool)),
            actions=(police.PoliceAction.ARREST,) if crime and rng.random() < 0.5 else (),
        )

    def _child(self, surname: str, incident_at: datetime, kind: str) -> police.Child:
        age = self.rng.randint(4, 17)
        urn: str | None
        if kind == "school-unknown":
            urn = None
        elif kind == "not-onboarded":
            urn = self.rng.choice(NOT_ONBOARDED_URNS)
        else:
            urn = self.rng.choice([school[1] for school in SCHOOLS if age in school[3]])
        return police.Child(first_name=self.rng.choice(_FIRST), surname=surname,
                            date_of_birth=self._dob(incident_at, age, age), present=self.rng.random() < 0.6,
                            school_urn=urn)

    def _dob(self, at: datetime, min_age: int, max_age: int) -> date:
        """A birth date making the person between `min_age` and `max_age` (inclusive) on `at`."""
        days = self.rng.randint(min_age * 366 + 1, (max_age + 1) * 365 - 2)
        return (at - timedelta(days=days)).date()


def corrupted_records(
    publisher: PolicePublisher, factory: IncidentFactory, *, school: PublicKeys
) -> dict[str, Output]:
    """
    Return one bad ingress record per kind of attack or fault, keyed by what the dead letter should say.

    ``bad-signature``: a ciphertext byte changed after signing; ``malformed``:
    not an envelope at all; ``unknown-sender``: signed by a key the directory
    does not hold, claiming to be the force; ``wrong-recipient``: encrypted for a
    school instead of the router; ``schema-violation``: a genuine envelope whose
    payload breaks the incident schema.
    """
    topic = publisher.topic

    def key() -> bytes:
        return f"corrupt-{uuid.uuid4()}".encode()

    good = publisher.seal_incident(factory.incident("schools")).value
    forged_incident, misaddressed_incident = factory.incident("schools"), factory.incident("schools")
    tampered = bytearray(good)
    marker = good.index(b'"ciphertext":"') + len(b'"ciphertext":"') + 5
    tampered[marker] = ord("A") if tampered[marker] != ord("A") else ord("B")

    rogue = PrivateKeys.generate(publisher.force.agency_id)
    forged = seal_event(forged_incident, sender=rogue, recipient=publisher.router, topic=topic,
                        now=publisher.clock())
    misaddressed = seal_event(misaddressed_incident, sender=publisher.force, recipient=school, topic=topic,
                              now=publisher.clock())
    incident_type = police.DomesticAbuseIncident
    invalid_payload = b'{"police_reference": "not a reference", "children": "several"}'
    invalid = seal(invalid_payload, sender=publisher.force, recipient=publisher.router, event_id=str(uuid.uuid4()),
                   event_type=incident_type.type_name(), schema_id=incident_type.schema_id(),
                   schema_version=incident_type.SCHEMA_VERSION, topic=topic, now=publisher.clock())
    values = {
        "bad-signature": bytes(tampered),
        "malformed": b"{this is not an envelope",
        "unknown-sender": forged,
        "wrong-recipient": misaddressed,
        "schema-violation": invalid,
    }
    return {reason: Output(topic=topic, key=key(), value=value, headers=((EVENT_ID, b"corrupt"),))
            for reason, value in values.items()}

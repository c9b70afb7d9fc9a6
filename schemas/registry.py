"""
Every data contract on the bus: its model, topic family, publishers and compatibility rule.

This table is the single source that the JSON Schema files, `safebus schemas
validate`, the topic registry (`safebus topics apply`) and the AsyncAPI document
are all generated from, so they cannot disagree.

Compatibility: contracts that cross agencies are FULL_TRANSITIVE (a new
version must be readable by, and able to read, every earlier release: partners
upgrade on their own schedules).  The audit decision record is written and read
inside the bus, so BACKWARD_TRANSITIVE is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from safebus.schemas import (
    audit,
    consent,
    decision,
    dvds,
    education,
    encompass,
    marac,
    police,
    risk,
    safeguarding,
    sharing,
)
from safebus.schemas._base import Event
from safebus.schemas.agency_kinds import AgencyKind

__all__ = [
    "CONTRACTS",
    "INGRESS_FAMILIES",
    "JSON_SCHEMA_DIALECT",
    "Compatibility",
    "ContractSpec",
    "Family",
    "by_type",
    "family_publishers",
    "in_family",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Compatibility(StrEnum):
    """How a new version must relate to every earlier released version."""

    BACKWARD_TRANSITIVE = "backward-transitive"
    FULL_TRANSITIVE = "full-transitive"


class Family(StrEnum):
    """Topic families: one ingress topic per producing agency and family."""

    DA_INCIDENT = "da-incident"
    PROTECTION_ORDER = "protection-order"
    ENCOMPASS_ACK = "encompass-ack"
    EDUCATION = "education"
    RISK = "risk"
    MARAC = "marac"
    SAFEGUARDING = "safeguarding"
    CONSENT = "consent"
    DVDS = "dvds"
    ENCOMPASS_NOTIFICATION = "encompass-notification"  # egress to schools
    REFERRAL = "referral"  # egress to other recipients
    RECEIPT = "receipt"
    AUDIT = "audit"


_K = AgencyKind
_PRACTITIONERS = frozenset({_K.POLICE, _K.SCHOOL, _K.CHILDRENS_SERVICES, _K.DA_HUB, _K.IDVA, _K.MARAC, _K.HEALTH})


@dataclass(frozen=True, kw_only=True)
class ContractSpec:
    """One contract: what it is, where it travels, who may publish it."""

    model: type[Event]
    family: Family
    publishers: frozenset[AgencyKind]
    compatibility: Compatibility = Compatibility.FULL_TRANSITIVE

    @property
    def event_type(self) -> str:
        """The event type, e.g. ``police.domestic-abuse-incident``."""
        return self.model.type_name()

    @property
    def version(self) -> str:
        """The version the current model implements."""
        return self.model.SCHEMA_VERSION

    def schema_uri(self, version: str | None = None) -> str:
        """The JSON Schema ``$id`` of `version` (default: current)."""
        return f"{self.model.schema_id()}:{version or self.version}"

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema 2020-12 document of the current version."""
        body = self.model.model_json_schema(mode="validation")
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": self.schema_uri(),
            "x-safebus-event-type": self.event_type,
            "x-safebus-schema-version": self.version,
            "x-safebus-compatibility": self.compatibility.value,
            **body,
        }


def _spec(model: type[Event], family: Family, publishers: frozenset[AgencyKind] | set[AgencyKind],
          compatibility: Compatibility = Compatibility.FULL_TRANSITIVE) -> ContractSpec:
    return ContractSpec(model=model, family=family, publishers=frozenset(publishers), compatibility=compatibility)


CONTRACTS: tuple[ContractSpec, ...] = (
    _spec(police.DomesticAbuseIncident, Family.DA_INCIDENT, {_K.POLICE}),
    _spec(police.DapnIssued, Family.PROTECTION_ORDER, {_K.POLICE}),
    _spec(police.DapoMade, Family.PROTECTION_ORDER, {_K.POLICE}),
    _spec(encompass.EncompassNotification, Family.ENCOMPASS_NOTIFICATION, {_K.ROUTER, _K.POLICE}),
    _spec(encompass.EncompassAcknowledged, Family.ENCOMPASS_ACK, {_K.SCHOOL}),
    _spec(education.EducationSettingRecorded, Family.EDUCATION, {_K.CHILDRENS_SERVICES}),
    _spec(education.EnrolmentRecorded, Family.EDUCATION, {_K.CHILDRENS_SERVICES, _K.SCHOOL}),
    _spec(education.EnrolmentChanged, Family.EDUCATION, {_K.CHILDRENS_SERVICES, _K.SCHOOL}),
    _spec(education.ElectiveHomeEducationRecorded, Family.EDUCATION, {_K.CHILDRENS_SERVICES}),
    _spec(risk.RiskAssessmentCompleted, Family.RISK, {_K.POLICE, _K.IDVA, _K.DA_HUB, _K.HEALTH}),
    _spec(marac.MaracReferralSubmitted, Family.MARAC, _PRACTITIONERS),
    _spec(marac.MaracCaseListed, Family.MARAC, {_K.MARAC}),
    _spec(marac.MaracResearchShared, Family.MARAC, _PRACTITIONERS),
    _spec(marac.MaracActionAssigned, Family.MARAC, {_K.MARAC}),
    _spec(marac.MaracActionUpdated, Family.MARAC, _PRACTITIONERS),
    _spec(safeguarding.ChildSafeguardingReferral, Family.SAFEGUARDING, _PRACTITIONERS),
    _spec(safeguarding.AdultSafeguardingConcern, Family.SAFEGUARDING, _PRACTITIONERS),
    _spec(safeguarding.MashDecision, Family.SAFEGUARDING, {_K.CHILDRENS_SERVICES}),
    _spec(consent.ConsentRecorded, Family.CONSENT, _PRACTITIONERS - {_K.SCHOOL, _K.MARAC}),
    _spec(consent.ConsentWithdrawn, Family.CONSENT, _PRACTITIONERS - {_K.SCHOOL, _K.MARAC}),
    _spec(dvds.DvdsApplication, Family.DVDS, {_K.POLICE}),
    _spec(dvds.DvdsDecision, Family.DVDS, {_K.POLICE}),
    _spec(sharing.Referral, Family.REFERRAL, {_K.ROUTER}),
    _spec(sharing.CaseReferral, Family.REFERRAL, {_K.ROUTER}),
    _spec(sharing.ReferralReceived, Family.RECEIPT,
          {_K.CHILDRENS_SERVICES, _K.DA_HUB, _K.IDVA, _K.MARAC, _K.HEALTH, _K.POLICE}),
    _spec(decision.SharingDecision, Family.AUDIT, {_K.ROUTER}, Compatibility.BACKWARD_TRANSITIVE),
    _spec(decision.SubjectErased, Family.AUDIT, {_K.ROUTER}, Compatibility.BACKWARD_TRANSITIVE),
    *(_spec(model, Family.AUDIT, {_K.ROUTER}, Compatibility.BACKWARD_TRANSITIVE)
      for model in (audit.Delivered, audit.DeadLettered, audit.DirectoryEntryPublished, audit.RulesetLoaded,
                    audit.AuditViewed, audit.Escalated, audit.EnrolmentMoved, audit.DeadlineSet,
                    audit.StateConflict, audit.BackfillAuthorised)),
    _spec(audit.Acknowledged, Family.AUDIT, {_K.SCHOOL}, Compatibility.BACKWARD_TRANSITIVE),
    _spec(audit.FileTransferConfirmed, Family.AUDIT, {_K.SCHOOL}, Compatibility.BACKWARD_TRANSITIVE),
)

INGRESS_FAMILIES = frozenset(spec.family for spec in CONTRACTS if spec.publishers - {_K.ROUTER})
"""Families that agencies publish into the bus (one ingress topic per publishing agency); a police system
may publish an Operation Encompass notification itself, so that family has ingress topics as well as egress."""


def by_type(event_type: str) -> ContractSpec | None:
    """The contract for `event_type`, or None."""
    return next((spec for spec in CONTRACTS if spec.event_type == event_type), None)


def in_family(family: Family) -> list[ContractSpec]:
    """Every contract of `family`."""
    return [spec for spec in CONTRACTS if spec.family is family]


def family_publishers(family: Family) -> frozenset[AgencyKind]:
    """Agency kinds that publish at least one contract of `family`."""
    return frozenset().union(*(spec.publishers for spec in in_family(family)))

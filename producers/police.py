"""
The police adapter: publishes a force's domestic-abuse incidents.

Incidents are keyed by police reference, so every update to one incident stays
in order on one partition; everything else (subject tokens, data keys, sealing
for the router) is `AgencyPublisher`'s.
"""

from __future__ import annotations

from safebus.keys import PrivateKeys
from safebus.publisher import AgencyPublisher
from safebus.records import Output
from safebus.schemas import police
from safebus.schemas._base import Event
from safebus.schemas.registry import Family

__all__ = ["PolicePublisher"]


class PolicePublisher(AgencyPublisher):
    """Publishes events for one police force; incidents are keyed by police reference."""

    @property
    def force(self) -> PrivateKeys:
        """The force's keys."""
        return self.agency

    @property
    def topic(self) -> str:
        """The force's incident ingress topic."""
        return self.names.ingress(self.agency.agency_id, Family.DA_INCIDENT)

    def seal(self, event: Event, *, key: str | None = None) -> Output:
        """Seal `event`; an incident is keyed by its police reference unless `key` is given."""
        if key is None and isinstance(event, police.DomesticAbuseIncident):
            key = event.police_reference
        return super().seal(event, key=key)

    def seal_incident(self, incident: police.DomesticAbuseIncident) -> Output:
        """Return the sealed record for `incident` without sending it."""
        return self.seal(incident)

    def publish_raw(self, outputs: list[Output]) -> None:
        """Publish pre-built records as they are (the demo's corrupted events use this)."""
        self.publish_outputs(outputs)

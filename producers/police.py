"""
The police adapter: publishes a force's domestic-abuse incidents to its ingress topic.

Each incident is sealed for the router (signed with the force's key, encrypted
so only the router can read it, under the data keys of every person in it, see
`safebus.keyservice`) and keyed by the police reference so that every update to
one incident stays in order on one partition.  The adapter fills the event's
``subjects`` with those people's pseudonymous tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from safebus.envelope import seal_event
from safebus.kafka_io import produce_all, reliable_producer
from safebus.keys import PrivateKeys, PublicKeys
from safebus.keyservice import KeyService, period_of
from safebus.pseudonyms import Tokeniser
from safebus.records import EVENT_ID, Output
from safebus.schemas import police
from safebus.schemas.registry import Family
from safebus.topics import TopicNames


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


class PolicePublisher:
    """Publishes incidents for one police force."""

    def __init__(
        self,
        *,
        bootstrap: str,
        force: PrivateKeys,
        router: PublicKeys,
        names: TopicNames,
        tokeniser: Tokeniser,
        keys: KeyService,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`force` are the force's private keys; `router` the processor's public keys."""
        self.force = force
        self.router = router
        self.tokeniser = tokeniser
        self.keys = keys
        self.topic = names.ingress(force.agency_id, Family.DA_INCIDENT)
        self.clock = clock
        self._producer = reliable_producer(bootstrap)

    def seal_incident(self, incident: police.DomesticAbuseIncident) -> Output:
        """Return the sealed record for `incident` without sending it."""
        people: list[police.Adult | police.Child] = [*incident.adults, *incident.children]
        tokens = tuple(dict.fromkeys(
            self.tokeniser.person(first_name=p.first_name, surname=p.surname, date_of_birth=p.date_of_birth)
            for p in people
        ))
        incident = incident.model_copy(update={"subjects": tokens})
        period = period_of(incident.occurred_at)
        value = seal_event(incident, sender=self.force, recipient=self.router, topic=self.topic, now=self.clock(),
                           subject_keys=[self.keys.subject_key(token, period) for token in tokens])
        return Output(topic=self.topic, key=incident.police_reference.encode(), value=value,
                      headers=((EVENT_ID, incident.event_id.encode()),))

    def publish(self, incidents: list[police.DomesticAbuseIncident]) -> list[str]:
        """Seal and publish `incidents`, wait for the broker, and return their event ids."""
        outputs = [self.seal_incident(incident) for incident in incidents]
        produce_all(self._producer, outputs)
        return [dict(o.headers)[EVENT_ID].decode() for o in outputs]

    def publish_raw(self, outputs: list[Output]) -> None:
        """Publish pre-built records as they are (the demo's corrupted events use this)."""
        produce_all(self._producer, outputs)

"""
Publishes any agency's contract events to the bus, signed, encrypted and keyed by subject.

For each event: (1) find its contract and check this agency's kind may publish
it; (2) name the people in it by pseudonymous token and record the tokens in
the event's ``subjects``; (3) seal it for the router under those people's data
keys (`safebus.keyservice`), signed with the agency's key; (4) publish it to the
agency's ingress topic for the contract's family, keyed so that events about
the same case stay in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime

from pydantic import BaseModel

from safebus.clock import utc_now
from safebus.directory import AgencyKind
from safebus.envelope import seal_event
from safebus.errors import EnvelopeError
from safebus.kafka_io import produce_all, reliable_producer
from safebus.keys import PrivateKeys, PublicKeys
from safebus.keyservice import KeyService, period_of
from safebus.pseudonyms import Tokeniser
from safebus.records import EVENT_ID, Output
from safebus.schemas._base import Event
from safebus.schemas.registry import by_type
from safebus.topics import TopicNames

__all__ = ["AgencyPublisher", "subject_tokens"]


def _people(value: object) -> Iterator[tuple[str, str, date | None]]:
    """Every (first name, surname, date of birth) in a model tree: persons, adults, children, victims."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        if "first_name" in fields and "surname" in fields:
            yield getattr(value, "first_name"), getattr(value, "surname"), getattr(value, "date_of_birth", None)  # noqa: B009
        for name in fields:
            yield from _people(getattr(value, name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _people(item)


def subject_tokens(event: Event, tokeniser: Tokeniser) -> tuple[str, ...]:
    """The tokens of everyone `event` is about: its named people plus any subject tokens it already carries."""
    named = (tokeniser.person(first_name=f, surname=s, date_of_birth=d) for f, s, d in _people(event))
    subject = getattr(event, "subject", None)  # consent and erasure events name their subject by token
    carried = [subject] if isinstance(subject, str) else []
    return tuple(dict.fromkeys([*event.subjects, *carried, *named]))


class AgencyPublisher:
    """Publishes the events of one agency."""

    def __init__(
        self,
        *,
        bootstrap: str,
        agency: PrivateKeys,
        kind: AgencyKind,
        router: PublicKeys,
        names: TopicNames,
        tokeniser: Tokeniser,
        keys: KeyService,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`agency` are the publishing agency's private keys; `router` the router's public keys."""
        self.agency = agency
        self.kind = kind
        self.router = router
        self.names = names
        self.tokeniser = tokeniser
        self.keys = keys
        self.clock = clock
        self._producer = reliable_producer(bootstrap)

    def topic_for(self, event_type: str) -> str:
        """The ingress topic this agency publishes `event_type` to; raises EnvelopeError if it may not."""
        spec = by_type(event_type)
        if spec is None or self.kind not in spec.publishers:
            raise EnvelopeError(f"a {self.kind.value} agency does not publish {event_type}")
        return self.names.ingress(self.agency.agency_id, spec.family)

    def seal(self, event: Event, *, key: str | None = None) -> Output:
        """Return the sealed record for `event` (keyed by `key`, default its event id) without sending it."""
        topic = self.topic_for(event.event_type)
        tokens = subject_tokens(event, self.tokeniser)
        event = event.model_copy(update={"subjects": tokens})
        period = period_of(event.occurred_at)
        value = seal_event(event, sender=self.agency, recipient=self.router, topic=topic, now=self.clock(),
                           subject_keys=[self.keys.subject_key(token, period) for token in tokens])
        return Output(topic=topic, key=(key or event.event_id).encode(), value=value,
                      headers=((EVENT_ID, event.event_id.encode()),))

    def publish_outputs(self, outputs: list[Output]) -> list[str]:
        """Publish sealed records, wait until the broker has them all, and return their event ids."""
        produce_all(self._producer, outputs)
        return [dict(o.headers).get(EVENT_ID, b"").decode() for o in outputs]

    def serve_events(self) -> None:
        """
        Serve the producer's queue of librdkafka events without publishing.

        Why: librdkafka keeps its error and log events until the client is
        polled. A publisher that waits for its next request while the broker is
        away would otherwise grow by kilobytes a second (bench/README.md).
        """
        self._producer.client.poll(0)

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Seal and publish `events`; return their event ids."""
        return self.publish_outputs([self.seal(event) for event in events])

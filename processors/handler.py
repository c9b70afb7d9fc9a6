"""
One incoming ingress record in, every record it causes out.

`IncidentHandler.handle` is the whole of the processor's work for a record:
(1) verify the envelope's signature, (2) decrypt it, (2b) refuse events
outside the clock window and replays of an event id already routed,
(3) validate the payload,
(4) route it by the agreement, (5) seal each share for its school, and
(6) describe every decision for the audit topic.  Any failure becomes exactly
one dead-letter output with its stage and reason; nothing raises out of
`handle`, so one bad record can never stop the processor or stall its partition.

The directory may change under it (`safebus.live_directory`): each record is
routed by the directory of that moment, without retired agencies
(`Directory.onboarded`); the router's own keyring is reloaded when the
directory changes (its rotation), and a record refused only because its
sender's key was not yet known is tried again after the next change
(`retry_held`, bounded by `safebus.dead_letter_retry`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from pydantic import ValidationError

from safebus.dead_letter_retry import HeldDeadLetters
from safebus.directory import Directory
from safebus.envelope import open_envelope, seal_event
from safebus.errors import InvalidEnvelope
from safebus.fact_signing import FactSigner
from safebus.jcs import canonical_model
from safebus.keys import PrivateKeys
from safebus.keyservice import KeyService, period_of
from safebus.logs import get_logger
from safebus.processors.case_sources import CASE_EVENTS
from safebus.processors.engine import RoutingResult, SharingEngine, incident_view
from safebus.processors.reference import apply_reference, reference_facts
from safebus.processors.replay import ClockWindow, PayloadWindow, ReplayGuard, Sighting
from safebus.processors.state import SqliteRouterState
from safebus.processors.state_changelog import ChangelogRouterState
from safebus.records import EVENT_ID, Origin, Output, Record, dead_letter
from safebus.schemas import police
from safebus.schemas._base import Event
from safebus.schemas.encompass import EncompassNotification
from safebus.schemas.registry import Family, by_type
from safebus.schemas.validation import validation_detail
from safebus.topics import TopicNames

__all__ = ["IncidentHandler"]

_log = get_logger("processor.handler")

_DECRYPT_REASONS = frozenset({"wrong-recipient", "undecryptable", "subject-key-unavailable"})


class IncidentHandler:
    """Turns one sealed police incident into egress, audit and dead-letter outputs."""

    def __init__(
        self,
        *,
        router: SharingEngine,
        directory: Callable[[], Directory],
        keys: Sequence[PrivateKeys],
        names: TopicNames,
        clock: Callable[[], datetime],
        subject_keys: KeyService,
        replay_guard: ReplayGuard,
        clock_window: ClockWindow,
        reference_state: SqliteRouterState,
        payload_window: PayloadWindow | None = None,
        keyring_source: Callable[[], Sequence[PrivateKeys]] | None = None,
    ) -> None:
        """
        `directory` returns the current verified directory (it may change: rotations,
        revocations); `keys` is the router's keyring, current generation last
        (`keyring_source` reloads it after a directory change); `clock` gives
        decision times (injected for tests).
        """
        self.keyring_source = keyring_source
        self._seen: Directory | None = None
        self._retried: Directory | None = None
        self._held: HeldDeadLetters[list[Output]] = HeldDeadLetters(what="ingress", clock=clock)
        self.router = router
        self.directory = directory
        self.keyring = list(keys)
        self.names = names
        self.clock = clock
        self.subject_keys = subject_keys
        self.replay_guard = replay_guard
        self.clock_window = clock_window
        self.reference_state = reference_state
        self.payload_window = payload_window or PayloadWindow()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Commit the replay guard's and the state's writes once, when the block (a Faust batch) ends."""
        with self.replay_guard.batch(), self.reference_state.batch():
            yield

    def handle(self, raw: bytes, origin: Origin) -> list[Output]:
        """
        Return every output for one ingress record; never raises.

        The outputs end with the state changes the record caused (for the
        router-state changelog), so they are durable before its offset is
        committed, like the shares and decisions themselves.
        """
        raw = raw if isinstance(raw, bytes) else b""  # a tombstone (no value) is refused like any bad record
        try:
            outputs = [*self.retry_held(), *self._handle(raw, origin)]
        except Exception as exc:  # noqa: BLE001 - a bug must dead-letter, not kill the worker
            # The type only: an exception's message may quote the input (docs/adr/0003).
            _log.error("handler_internal_error", topic=origin.topic, partition=origin.partition,
                       offset=origin.offset, error=type(exc).__name__)
            outputs = [self._reject(raw, origin, "route", "internal-error", type(exc).__name__)]
        if isinstance(self.reference_state, ChangelogRouterState):
            outputs.extend(self.reference_state.drain())
        # Decisions and other facts are signed with the router's current key, so the sequencer can attribute them.
        return FactSigner(keys=self.keyring[-1], audit_topic=self.names.audit).sign_all(outputs)

    def _handle(self, raw: bytes, origin: Origin) -> list[Output]:
        # (1) and (2): signature, then decryption; one opaque error with a reason code.
        try:
            directory = self._current()
            opened = open_envelope(raw, recipient=self.keyring, senders=directory, topic=origin.topic,
                                   subject_keys=self.subject_keys.lookup)
        except InvalidEnvelope as exc:
            stage = "decrypt" if exc.reason in _DECRYPT_REASONS else "verify"
            return [self._reject(raw, origin, stage, exc.reason, "")]

        # (2b): replay defence, on the now-authenticated id and creation time.
        try:
            created_at = datetime.fromisoformat(opened.header["created_at"])
        except ValueError:
            return [self._reject(raw, origin, "verify", "malformed", "created_at")]
        if created_at.tzinfo is None or not self.clock_window.admits(created_at, self.clock()):
            return [self._reject(raw, origin, "verify", "outside-clock-window", opened.header["created_at"][:40])]
        sighting, first = self.replay_guard.sight(opened.event_id, origin)
        if sighting is Sighting.DUPLICATE:
            return [self._reject(raw, origin, "replay", "duplicate-event", f"first seen at {first}")]

        # (3): the declared contract must be one this producer may publish, on
        # this topic; the payload, and its own metadata, must match the signed header.
        spec = by_type(opened.event_type)
        if spec is None or opened.header["schema_id"] != spec.model.schema_id():
            return [self._reject(raw, origin, "validate", "unexpected-event-type", opened.event_type[:100])]
        producer = directory.get(opened.producer)
        if (producer is None or producer.kind not in spec.publishers
                or origin.topic != self.names.ingress(opened.producer, spec.family)):
            return [self._reject(raw, origin, "validate", "not-permitted", opened.event_type[:100])]
        try:
            event = spec.model.model_validate_json(opened.plaintext)
        except ValidationError as exc:
            return [self._reject(raw, origin, "validate", "schema-violation", validation_detail(exc))]
        mismatched = [name for name, signed in (("event_id", opened.event_id), ("producer", opened.producer),
                                                ("schema_version", opened.header["schema_version"]))
                      if getattr(event, name) != signed]
        if mismatched:
            return [self._reject(raw, origin, "validate", "metadata-mismatch", ", ".join(mismatched))]
        implausible = self.payload_window.refusal(
            event, self.clock(), routed=isinstance(event, (EncompassNotification, police.DomesticAbuseIncident,
                                                           *CASE_EVENTS)))
        if implausible:
            return [self._reject(raw, origin, "validate", "implausible-time", implausible)]
        incident: Event
        if isinstance(event, EncompassNotification):
            incident = incident_view(event)  # a police system published the notification itself
        elif isinstance(event, (police.DomesticAbuseIncident, *CASE_EVENTS)):
            incident = event  # an incident, a risk assessment or a MARAC referral or action
        elif (applied := apply_reference(event, self.reference_state, self.router.tokeniser)) is not None:
            _log.info("reference_applied", event_id=event.event_id, event_type=event.event_type)
            facts = reference_facts(event, applied, self.router.tokeniser, producer=directory.router().id,
                                    at=self.clock())
            return [Output(
                topic=self.names.audit, key=fact.event_id.encode(), value=canonical_model(fact),
                headers=((EVENT_ID, fact.event_id.encode()), ("safebus.cause", event.event_id.encode())))
                for fact in facts]
        else:
            return [self._reject(raw, origin, "validate", "not-routed", opened.event_type[:100])]

        # (4): the agreement decides.
        result = self.router.route(incident, decided_at=self.clock())
        _log.info("incident_routed", event_id=incident.event_id, decisions=len(result.decisions),
                  shares=len(result.shares))
        # (5) then (6): shares before the decisions that record them; on a crash
        # between the two, reprocessing repeats both and receivers deduplicate.
        return self._shares(result, incident) + self._audit(result)

    def _shares(self, result: RoutingResult, incident: Event) -> list[Output]:
        outputs = []
        period = period_of(incident.occurred_at)
        for share in result.shares:
            family = Family.ENCOMPASS_NOTIFICATION if isinstance(share.payload, EncompassNotification) else (
                Family.REFERRAL)
            topic = self.names.egress(share.recipient.id, family)
            output_id = share.payload.event_id
            keys = [self.subject_keys.subject_key(token, period) for token in share.subject_tokens]
            sealed = seal_event(share.payload, sender=self.keyring[-1], recipient=share.recipient.public_keys(),
                                topic=topic, now=self.clock(), subject_keys=keys)
            outputs.append(Output(
                topic=topic, key=output_id.encode(), value=sealed,
                headers=((EVENT_ID, output_id.encode()), ("safebus.cause", incident.event_id.encode())),
            ))
        return outputs

    def _audit(self, result: RoutingResult) -> list[Output]:
        return [
            Output(
                topic=self.names.audit,
                key=decision.decision_id.encode(),
                value=canonical_model(decision),
                headers=((EVENT_ID, decision.event_id.encode()), ("safebus.cause", decision.about_event_id.encode())),
            )
            for decision in result.decisions
        ]

    def _current(self) -> Directory:
        """The directory for this record; after a change, route by its onboarded agencies and reload our keys."""
        directory = self.directory()
        if directory is not self._seen:
            self._seen = directory
            self.router.directory = directory.onboarded()
            if self.keyring_source is not None:
                self.keyring = list(self.keyring_source())
        return directory

    def retry_held(self) -> list[Output]:
        """
        After a directory change, the outputs of held records that are now admitted (none otherwise).

        `handle` calls it first, so the retried records' outputs travel with
        the current record's and are durable before its offset is committed.
        """
        directory = self._current()
        if directory is self._retried or not len(self._held):
            self._retried = directory
            return []
        self._retried = directory

        def again(record: Record) -> list[Output] | Output:
            origin = Origin(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key)
            try:
                outputs = self._handle(record.value, origin)  # `handle` drains and signs them with its own
            except Exception as exc:  # noqa: BLE001 - as in `handle`: never raise out of the router
                _log.exception("handler_internal_error", topic=origin.topic, offset=origin.offset)
                return self._reject(record.value, origin, "route", "internal-error", type(exc).__name__)
            refused = len(outputs) == 1 and outputs[0].topic == self.names.deadletter
            return outputs[0] if refused else outputs

        return [output for outputs in self._held.retry(again).admitted for output in outputs]

    def _reject(self, raw: bytes, origin: Origin, stage: str, reason: str, detail: str) -> Output:
        if stage in ("verify", "decrypt"):
            self._held.hold_raw(raw, origin, reason)
        _log.warning("event_dead_lettered", topic=origin.topic, partition=origin.partition, offset=origin.offset,
                     stage=stage, reason=reason)
        return dead_letter(raw=raw, origin=origin, stage=stage, reason=reason, detail=detail,
                           topic=self.names.deadletter)

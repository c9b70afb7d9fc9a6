"""
Reference events that change what the router knows: consent and education.

Consent recorded or withdrawn changes which consent-based shares may happen;
enrolments and elective home education change which setting a child's
notification goes to.  They are applied to the router's state, keyed by
pseudonymous tokens, in the total order of `safebus.processors.ordering`
(occurred_at, then the safer change, then recorded_at and event id): a late,
older event never overrides, and a tie never drops one.  A conflict at one
ordering point becomes an `audit.state-conflict` fact beside the state change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from safebus.logs import get_logger
from safebus.processors.ordering import MOVED_AWAY
from safebus.processors.state import Conflict, SqliteRouterState
from safebus.pseudonyms import Tokeniser
from safebus.schemas import consent, education
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.audit import ConflictKind, EnrolmentMoved, StateConflict

__all__ = ["Applied", "apply_reference", "enrolment_moved", "reference_facts", "state_conflict"]

_MOVE_IDS = uuid.UUID("3e9a7c1b-5d2f-4b8e-a6c0-1f7d2e9b4c58")
_CONFLICT_IDS = uuid.UUID("9b2d4f6a-1c3e-4a5b-8d7f-0e2c4a6b8d1f")

_log = get_logger("processor.reference")


@dataclass(frozen=True)
class Applied:
    """A reference event applied to the router's state, and the conflict it met there, if any."""

    conflict: Conflict | None = None
    move_stands: bool = False
    """A move (`EnrolmentChanged`) that is, after applying, what the child's enrolment is: the old setting must
    send the file on.  False for a move older than the current enrolment in the total order, superseded at its
    own instant, or left unresolved by a conflicting change there."""


def apply_reference(event: Event, state: SqliteRouterState, tokeniser: Tokeniser) -> Applied | None:
    """Apply a consent or education event to `state`; return None for other event types."""
    at, recorded_at, event_id = event.occurred_at, event.recorded_at, event.event_id
    conflict: Conflict | None = None
    move_stands = False
    if isinstance(event, consent.ConsentRecorded):
        conflict = state.set_consent(event.subject, event.purpose.value, "given" if event.given else "refused", at,
                                     recorded_at=recorded_at, event_id=event_id)
    elif isinstance(event, consent.ConsentWithdrawn):
        conflict = state.set_consent(event.subject, event.purpose.value, "withdrawn", at, recorded_at=recorded_at,
                                     event_id=event_id)
    elif isinstance(event, education.EnrolmentRecorded | education.EnrolmentChanged
                    | education.ElectiveHomeEducationRecorded):
        child = event.child
        token = tokeniser.person(first_name=child.first_name, surname=child.surname,
                                 date_of_birth=child.date_of_birth)
        if isinstance(event, education.EnrolmentRecorded):
            setting: str | None = event.setting_urn
        elif (isinstance(event, education.ElectiveHomeEducationRecorded)
              or event.reason is education.MoveReason.ELECTIVE_HOME_EDUCATION):
            setting = "home-educated"
        else:
            setting = event.new_setting_urn or MOVED_AWAY  # left, destination unknown: not the police record's URN
        previous = None if isinstance(event, education.EnrolmentRecorded) else event.previous_setting_urn
        conflict = state.set_enrolment(token, setting, at, previous=previous, recorded_at=recorded_at,
                                       event_id=event_id)
        if isinstance(event, education.EnrolmentChanged):
            move_stands = _stands(state, token, event_id, setting)
    elif isinstance(event, education.EducationSettingRecorded):
        pass  # the setting directory is reference data for delivery (Key Adults, calendars), not routing
    else:
        return None
    if conflict is not None:
        _log.warning("state_conflict", kind=conflict.kind, event_id=event.event_id,
                     conflicting=[event_id for event_id, _ in conflict.changes], resolved_to=conflict.resolved_to)
    return Applied(conflict=conflict, move_stands=move_stands)


def _stands(state: SqliteRouterState, token: str, event_id: str, setting: str | None) -> bool:
    """
    Whether the change `event_id` is among those deciding the child's enrolment and that enrolment is `setting`.

    Asked after the write rather than comparing before with after, so that the
    answer is the same on a redelivery: a router that crashed after storing a
    move but before publishing its fact publishes it when the move comes again.
    """
    deciding = {change.event_id for change in state.enrolment_changes(token)}
    return event_id in deciding and state.enrolment(token) == setting


def reference_facts(event: Event, applied: Applied, tokeniser: Tokeniser, *, producer: str,
                    at: datetime) -> list[Event]:
    """
    The audit facts an applied reference event gives: the move it made, the conflict it met.

    The move's fact (`audit.enrolment-moved`, which prompts the old setting to
    transfer the child-protection file) only if the move now stands: a move
    older than the child's current enrolment changed nothing and prompts nobody.
    """
    facts: list[Event] = []
    moved = enrolment_moved(event, tokeniser, producer=producer, at=at) if applied.move_stands else None
    if moved is not None:
        facts.append(moved)
    if applied.conflict is not None:
        facts.append(state_conflict(applied.conflict, producer=producer, at=at))
    return facts


def state_conflict(conflict: Conflict, *, producer: str, at: datetime) -> StateConflict:
    """
    The audit fact for a conflict at one ordering point, and what the router let stand.

    Its id derives from the conflicting changes, so meeting the same conflict
    again (a redelivery, a replay) logs it once.
    """
    ids = tuple(event_id for event_id, _ in conflict.changes)
    point = datetime.fromisoformat(conflict.ordering_point)
    fact_id = uuid.uuid5(_CONFLICT_IDS, "|".join((conflict.kind, conflict.subject, conflict.purpose or "",
                                                   conflict.ordering_point, *ids)))
    return StateConflict(
        **event_metadata(StateConflict, producer=producer, occurred_at=point, recorded_at=at,
                         event_id=str(fact_id), subjects=(conflict.subject,)),
        kind=ConflictKind(conflict.kind), purpose=conflict.purpose, ordering_point=point, about_event_ids=ids,
        values=tuple(value for _, value in conflict.changes), resolved_to=conflict.resolved_to,
    )


def enrolment_moved(event: Event, tokeniser: Tokeniser, *, producer: str, at: datetime) -> EnrolmentMoved | None:
    """
    The audit fact for an applied enrolment change (None for other events).

    It records that later notifications follow the child, and starts the old
    setting's clock to transfer the child-protection file.  Its id derives from
    the change's event id, so reprocessing the change logs it once.
    """
    if not isinstance(event, education.EnrolmentChanged):
        return None
    child = event.child
    token = tokeniser.person(first_name=child.first_name, surname=child.surname, date_of_birth=child.date_of_birth)
    return EnrolmentMoved(
        **event_metadata(EnrolmentMoved, producer=producer, occurred_at=event.occurred_at, recorded_at=at,
                         event_id=str(uuid.uuid5(_MOVE_IDS, event.event_id)), subjects=(token,)),
        about_event_id=event.event_id, previous_setting_urn=event.previous_setting_urn,
        new_setting_urn=event.new_setting_urn, effective_date=event.effective_date, reason=event.reason.value,
    )

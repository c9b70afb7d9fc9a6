"""
Reference events that change what the router knows: consent and education.

Consent recorded or withdrawn changes which consent-based shares may happen;
enrolments and elective home education change which setting a child's
notification goes to.  They are applied to the router's state, keyed by
pseudonymous tokens, newest first (a late, older event never overrides).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from safebus.processors.state import SqliteRouterState
from safebus.pseudonyms import Tokeniser
from safebus.schemas import consent, education
from safebus.schemas._base import Event, event_metadata
from safebus.schemas.audit import EnrolmentMoved

_MOVE_IDS = uuid.UUID("3e9a7c1b-5d2f-4b8e-a6c0-1f7d2e9b4c58")


def apply_reference(event: Event, state: SqliteRouterState, tokeniser: Tokeniser) -> bool:
    """Apply a consent or education event to `state`; return False for other event types."""
    at = event.occurred_at
    if isinstance(event, consent.ConsentRecorded):
        state.set_consent(event.subject, event.purpose.value, "given" if event.given else "refused", at)
    elif isinstance(event, consent.ConsentWithdrawn):
        state.set_consent(event.subject, event.purpose.value, "withdrawn", at)
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
            setting = event.new_setting_urn
        state.set_enrolment(token, setting, at)
    elif isinstance(event, education.EducationSettingRecorded):
        pass  # the setting directory is reference data for delivery (Key Adults, calendars), not routing
    else:
        return False
    return True


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

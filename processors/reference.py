"""
Reference events that change what the router knows: consent and education.

Consent recorded or withdrawn changes which consent-based shares may happen;
enrolments and elective home education change which setting a child's
notification goes to.  They are applied to the router's state, keyed by
pseudonymous tokens, newest first (a late, older event never overrides).
"""

from __future__ import annotations

from safebus.processors.state import SqliteRouterState
from safebus.pseudonyms import Tokeniser
from safebus.schemas import consent, education
from safebus.schemas._base import Event


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

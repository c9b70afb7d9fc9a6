"""
The total order of changes to the router's state, and what stands when two changes tie.

Reference events (consent, enrolment) arrive late, in batches, and with equal
timestamps: a supplier exporting a day's records may stamp a consent and its
withdrawal, or an enrolment and the move away from it, with the same
``occurred_at``.  Newest-wins on ``occurred_at`` alone then silently keeps
whichever arrived first.  Instead every change has a place in one total order:

    (occurred_at, safety, recorded_at, event_id)

``occurred_at`` is when the thing happened and is the *ordering point*.  Two
changes at the same point that say different things are a conflict, and the
safer one stands whatever order they arrived in:

- consent: a withdrawal beats a refusal beats a grant (``safety``), so a
  withdrawal stamped like the consent it withdraws stops consent-based shares;
- enrolment: a move whose previous setting is another change's setting follows
  it (the move names what it moves from); otherwise settings that still
  differ leave the child's setting *unresolved*, and the alert goes to the MASH
  education desk, never to a school the child may have left.

``recorded_at`` and ``event_id`` only order changes that agree, so the order is
total and the result is a function of the set of changes, not of their arrival
order — which is also what lets the changelog be replayed in any order.
All times are compared in UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "CONSENT_SAFETY",
    "MOVED_AWAY",
    "UNRESOLVED",
    "Conflict",
    "ConsentChange",
    "EnrolmentChange",
    "anonymous_id",
    "instant",
    "merge_consent",
    "merge_enrolment",
    "resolve_enrolment",
]

UNRESOLVED = "unresolved"
"""The enrolment of a child whose same-instant changes conflict: alerts go to the MASH education desk."""

MOVED_AWAY = "moved-away"
"""The enrolment of a child who left its setting for one not known: alerts go to the MASH education desk too."""

CONSENT_SAFETY = {"given": 0, "refused": 1, "withdrawn": 2}
"""Which consent status stands when changes tie at one ordering point (higher is safer: fewer shares)."""


def instant(at: datetime) -> str:
    """`at` as fixed-width UTC text, so stored instants compare as text in time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def anonymous_id(*parts: str | None) -> str:
    """A stable id for a change recorded without an event id (tools, tests, old changelog records)."""
    return "anon-" + hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class ConsentChange:
    """A consent status for one (subject, purpose), with its place in the total order."""

    status: str
    occurred_at: str
    recorded_at: str
    event_id: str

    @property
    def key(self) -> tuple[str, int, str, str]:
        """Its place in the total order: the greatest key stands."""
        return self.occurred_at, CONSENT_SAFETY.get(self.status, 0), self.recorded_at, self.event_id


@dataclass(frozen=True, kw_only=True)
class EnrolmentChange:
    """A child's setting as one change said it (None: unknown), and the setting it moved from, if it says."""

    setting: str | None
    previous: str | None
    occurred_at: str
    recorded_at: str
    event_id: str


def resolve_enrolment(changes: Iterable[EnrolmentChange]) -> str | None:
    """
    The setting that stands given every change at the latest ordering point.

    A change is superseded by another at the same point that moves away from
    its setting; of the rest, one setting stands if they all agree, and
    otherwise the setting is `UNRESOLVED`.  Independent of the changes' order.
    """
    latest = _at_latest_point(list(changes))
    standing = {c.setting for c in latest
                if not any(o.previous is not None and o.previous == c.setting and o.setting != c.setting
                           for o in latest)}
    if len(standing) == 1:
        return next(iter(standing))
    return UNRESOLVED if latest else None


def _at_latest_point(changes: list[EnrolmentChange]) -> list[EnrolmentChange]:
    point = max((c.occurred_at for c in changes), default=None)
    return [c for c in changes if c.occurred_at == point]


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """Changes at one ordering point that disagree, and what stands (tokens, URNs and statuses only)."""

    kind: str
    """``consent`` or ``enrolment``."""
    subject: str
    purpose: str | None
    ordering_point: str
    changes: tuple[tuple[str, str], ...]
    """(event id, what it said), sorted by event id."""
    resolved_to: str


def merge_enrolment(known: Iterable[EnrolmentChange], change: EnrolmentChange,
                    child_token: str) -> tuple[tuple[EnrolmentChange, ...], Conflict | None]:
    """
    A child's changes at its latest ordering point once `change` is merged, and the conflict they now show.

    An older change loses; a newer one replaces what is known; one at the same
    ordering point joins the others there (once per event id), and they decide
    together (`resolve_enrolment`).  Pure, so every store that keeps enrolments
    (SQLite, Faust tables) merges by the same rule and the same property
    tests cover them all.  The changes come back sorted by event id.
    """
    current = {c.event_id: c for c in known}
    point = max((c.occurred_at for c in current.values()), default=None)
    if point is not None and change.occurred_at < point:
        return tuple(sorted(current.values(), key=lambda c: c.event_id)), None
    if point is not None and change.occurred_at > point:
        current = {}
    current.setdefault(change.event_id, change)
    latest = tuple(sorted(current.values(), key=lambda c: c.event_id))
    if resolve_enrolment(latest) != UNRESOLVED:
        return latest, None
    return latest, Conflict(kind="enrolment", subject=child_token, purpose=None, ordering_point=change.occurred_at,
                            changes=tuple((c.event_id, c.setting or "unknown") for c in latest),
                            resolved_to=UNRESOLVED)


def merge_consent(current: ConsentChange | None, change: ConsentChange, subject_token: str,
                  purpose: str) -> tuple[ConsentChange, Conflict | None]:
    """
    The consent change that stands once `change` is merged, and the conflict it met, if any.

    The greatest change in the total order stands: an older change never
    overrides a newer one, and at the same ordering point the safer status
    stands (withdrawn, then refused, then given) whatever the arrival order.
    """
    stands = change if current is None or change.key > current.key else current
    if current is None or current.occurred_at != change.occurred_at or current.status == change.status:
        return stands, None
    return stands, Conflict(kind="consent", subject=subject_token, purpose=purpose,
                            ordering_point=change.occurred_at,
                            changes=tuple(sorted(((current.event_id, current.status),
                                                  (change.event_id, change.status)))),
                            resolved_to=stands.status)

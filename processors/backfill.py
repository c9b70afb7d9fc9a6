"""
Backfills: routing incidents older than the payload window, deliberately and on the record.

The router refuses incidents older than ``SAFEBUS_MAX_INCIDENT_AGE_DAYS``
(`safebus.processors.replay.PayloadWindow`): an incident dated years ago is
far more likely a typo than news.  Loading a real backlog (after a force's
records-system migration, say) is an operator's decision, so
``safebus processor run --backfill-from DATE --backfill-reason TEXT --by ID``
first publishes an ``audit.backfill-authorised`` fact naming who, why and
from when, and only then routes.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from safebus.processors.replay import PayloadWindow
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import BackfillAuthorised

__all__ = ["backfill_authorised"]

_BACKFILL_IDS = uuid.UUID("6c2d8f41-9b3e-4a7d-8e15-2f4b6a9c0d73")


def backfill_authorised(*, window: PayloadWindow, backfill_from: date, by: str, reason: str, producer: str,
                        at: datetime) -> BackfillAuthorised:
    """The audit fact for starting a backfill (one per operator, start date and reason, however often restarted)."""
    return BackfillAuthorised(
        **event_metadata(BackfillAuthorised, producer=producer, occurred_at=at, recorded_at=at,
                         event_id=str(uuid.uuid5(_BACKFILL_IDS, f"{backfill_from}\x1f{by}\x1f{reason}"))),
        backfill_from=backfill_from, authorised_by=by, reason=reason,
        max_incident_age_days=window.max_age.total_seconds() / 86400,
    )

"""
Receipts: the `sharing.referral-received` event a recipient publishes when a practitioner takes a referral.

The receipt lets the sender and the audit trail see that a referral did not
just arrive but was picked up, by whom and when.  Three choices, and why:

- **Deterministic id.**  A receipt's event id is a UUIDv5 of (recipient,
  referral id), so a receipt published twice (a crash between publishing and
  recording it) is recognisably the same receipt; its times are the stored
  take, not the moment of sending, so a re-send is identical in content.
- **No subject keys.**  A receipt holds no personal data (a referral id, an
  agency, a staff id, a time) and names no subjects, so it is sealed under no
  subject's data key and stays readable after an erasure, like the audit
  trail: that a referral was taken remains provable when its content is gone.
- **Outbox.**  The queue records the take first and marks the receipt sent
  only after the broker acknowledged it; `send_due_receipts` publishes every
  take not yet marked, so a failed publish is retried by the next take (or a
  re-run) and a receipt already sent is never sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from safebus.consumers.queues.store import QueueStore, TakenReferral
from safebus.errors import EnvelopeError
from safebus.publisher import AgencyPublisher
from safebus.schemas._base import event_metadata
from safebus.schemas.sharing import ReferralReceived

__all__ = ["publish_receipt", "publish_receipts", "receipt_event_id", "receipt_for", "send_due_receipts"]

_RECEIPT_IDS = uuid.UUID("3b8f5e0a-2c71-4d0e-9f1a-7e4c6d2b9a15")
"""Namespace of receipt event ids (distinct from the router's, so no receipt id can equal a referral's)."""


def receipt_event_id(recipient_id: str, referral_id: str) -> str:
    """The one event id any receipt of this referral by this recipient has."""
    return str(uuid.uuid5(_RECEIPT_IDS, f"receipt|{recipient_id}|{referral_id}"))


def receipt_for(taken: TakenReferral) -> ReferralReceived:
    """The receipt event for a taken referral, produced by the recipient itself and correlated to the referral."""
    return ReferralReceived(
        **event_metadata(ReferralReceived, producer=taken.recipient_id, occurred_at=taken.taken_at,
                         recorded_at=taken.taken_at, event_id=receipt_event_id(taken.recipient_id, taken.referral_id),
                         correlation_id=taken.event_id),
        referral_id=taken.referral_id, recipient=taken.recipient_id, received_by=taken.taken_by,
        received_at=taken.taken_at,
    )


def publish_receipt(publisher: AgencyPublisher, taken: TakenReferral) -> str:
    """
    Seal the receipt of `taken` for the router and publish it on the agency's receipt topic; return its event id.

    Keyed by referral id, so everything about one referral stays in order on
    one partition.  Raises EnvelopeError if `publisher` is not the taking
    agency (an agency may only say what *it* received), BrokerError if the
    broker does not acknowledge.
    """
    return publish_receipts(publisher, [taken])[0]


def publish_receipts(publisher: AgencyPublisher, taken: list[TakenReferral]) -> list[str]:
    """`publish_receipt` for several takes, waiting once for the broker to acknowledge them all."""
    for t in taken:
        if t.recipient_id != publisher.agency.agency_id:
            raise EnvelopeError(f"{publisher.agency.agency_id} cannot publish a receipt for {t.recipient_id}")
    return publisher.publish_outputs([publisher.seal(receipt_for(t), key=t.referral_id) for t in taken])


def send_due_receipts(store: QueueStore, publisher: AgencyPublisher, *, clock: Callable[[], datetime]) -> list[str]:
    """Publish the receipt of every take of the publisher's agency not yet sent, then mark them sent."""
    recipient_id = publisher.agency.agency_id
    due = store.receipts_due(recipient_id)
    if not due:
        return []
    event_ids = publish_receipts(publisher, due)
    store.receipts_sent(recipient_id, [t.referral_id for t in due], at=clock())
    return event_ids

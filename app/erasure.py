"""
Erasing a data subject by destroying their keys, and recording that it happened.

Steps: (1) make sure the audit topic is reachable, so the erasure can be
recorded; (2) destroy every data key of the subject in the key service; (3)
publish an ``audit.subject-erased`` fact naming the subject's token, the key
ids destroyed, who asked and why.  The audit trail holds tokens, never names,
so it survives the erasure intact.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from safebus.deploy.broker import is_reachable
from safebus.errors import BrokerError, ConfigError
from safebus.fact_signing import FactPublisher
from safebus.jcs import canonical_model
from safebus.keyservice import KeyService
from safebus.records import EVENT_ID, Output
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import SubjectErased

__all__ = ["erase_subject"]

_TOKEN = re.compile(r"^subj_[0-9a-f]{32}$")


def erase_subject(
    *, token: str, requested_by: str, reason: str, keys: KeyService, bootstrap: str, facts: FactPublisher,
    operator: str, now: datetime,
) -> SubjectErased:
    """Destroy `token`'s keys and record it on the audit topic, signed by `facts`; raises ConfigError or BrokerError."""
    if not _TOKEN.match(token):
        raise ConfigError("a subject is named by its token (subj_ and 32 hex digits): see 'safebus subject token'")
    # (1): an erasure that cannot be recorded must not happen.
    if not is_reachable(bootstrap):
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: nothing was erased")
    # (2): destroy.
    destroyed = keys.erase_subject(token)
    # (3): record.
    fact = SubjectErased(
        **event_metadata(SubjectErased, producer=operator, occurred_at=now, recorded_at=now,
                         event_id=str(uuid.uuid4()), subjects=(token,)),
        subject=token, key_ids_destroyed=tuple(destroyed), requested_by=requested_by, reason=reason,
    )
    record = Output(topic=facts.signer.audit_topic, key=fact.event_id.encode(),
                    value=canonical_model(fact), headers=((EVENT_ID, fact.event_id.encode()),))
    facts.publish([record])
    return fact

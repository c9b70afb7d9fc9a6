"""
Administering the agency directory: onboarding, key rotation, revocation, retirement, distribution.

Every change produces a newly signed entry (partnership root key) that is
written to the local directory and, given a broker, published to the compacted
``<prefix>.reference.agencies`` topic keyed by agency id, from which other
machines rebuild their directory (`sync_from_topic`), keeping only entries that
verify against their trust anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safebus.directory import (
    ENTRY_LIFETIME,
    Agency,
    AgencyKind,
    Directory,
    KeyStatus,
    PartnershipStore,
    SignedAgency,
    new_entry,
    rotated,
    sign_entry,
    verify_entry,
    with_status,
)
from safebus.errors import ConfigError
from safebus.jcs import canonical_model
from safebus.kafka_io import produce_all, read_topic, reliable_producer
from safebus.kafka_security import current_security
from safebus.keys import PrivateKeys
from safebus.logs import get_logger
from safebus.records import Output, Record
from safebus.topics import TopicNames, bus_topics

__all__ = [
    "add_agency",
    "create_topics",
    "latest_verified",
    "publish_change",
    "publish_entries",
    "retire_agency",
    "retire_key",
    "revoke_key",
    "rotate_keys",
    "sync_from_topic",
]

_log = get_logger("agency_admin")


def _entry(store: PartnershipStore, agency_id: str) -> Agency:
    found = next((s.entry for s in store.signed_entries() if s.entry.id == agency_id), None)
    if found is None:
        raise ConfigError(f"no agency {agency_id!r} in the directory")
    return found


def _store_signed(store: PartnershipStore, entry: Agency) -> SignedAgency:
    signed = sign_entry(entry, store.root_key())
    store.put_entry(signed)
    return signed


def add_agency(
    store: PartnershipStore, *, agency_id: str, kind: AgencyKind, name: str, urn: str | None, now: datetime,
    prepare: Callable[[Agency], object] | None = None,
) -> SignedAgency:
    """
    Onboard an agency: generate its keys (kept locally) and sign its first entry.

    `prepare` runs with the new entry before it is stored (`create_topics`:
    running components act on the entry as soon as they see it).
    """
    if any(s.entry.id == agency_id for s in store.signed_entries()):
        raise ConfigError(f"agency {agency_id!r} is already in the directory")
    keys = PrivateKeys.generate(agency_id)
    entry = new_entry(keys, kind=kind, name=name, urn=urn, now=now)
    if prepare is not None:
        prepare(entry)
    store.save_private_keys(keys)
    return _store_signed(store, entry)


def create_topics(entry: Agency, *, bootstrap: str, names: TopicNames) -> int:
    """
    Create the topics `entry`'s agency needs (its ingress and egress topics) and let who needs them in.

    Existing topics are left alone.  On a secured cluster (any transport but
    plaintext, whose local broker has no authorizer) the grants those topics
    need are added at once: the agency's own and the components' that read or
    write them (`safebus.deploy.acls`), so a running router reads a new force's
    incidents with no restart and no separate ``acls apply``.  Nothing is
    revoked here (that is ``acls apply``'s drift check).  Returns how many
    grants were added.
    """
    # administration only: keep the workers' imports small
    from safebus.deploy.acls import desired_bindings
    from safebus.deploy.acls_admin import grant_missing
    from safebus.deploy.topics_admin import apply_topics

    alone = Directory(partnership="", agencies=(entry,))
    apply_topics(bootstrap, bus_topics(alone, names))
    if not current_security().tls:
        return 0
    granted = grant_missing(bootstrap, desired_bindings(alone, names))
    if granted:
        _log.info("agency_access_granted", agency=entry.id, grants=granted)
    return granted


def rotate_keys(store: PartnershipStore, agency_id: str, *, now: datetime) -> SignedAgency:
    """
    Give an agency a new key generation without downtime.

    New events are signed and sealed with the new keys at once; the previous
    generation becomes *superseded*, so events already sealed with it stay
    readable until it is retired.
    """
    keys = PrivateKeys.generate(agency_id)
    store.save_private_keys(keys)  # keeps the previous generation's private keys beside it
    return _store_signed(store, rotated(_entry(store, agency_id), keys, now=now))


def revoke_key(store: PartnershipStore, agency_id: str, signing_key_id: str, *, now: datetime) -> SignedAgency:
    """Mark a generation compromised: events signed with it are refused as ``revoked-key``."""
    entry = with_status(_entry(store, agency_id), signing_key_id, KeyStatus.REVOKED, now=now)
    if not any(g.status is KeyStatus.ACTIVE for g in entry.keys):
        _log.warning("agency_without_active_keys", agency=agency_id)
    return _store_signed(store, entry)


def retire_key(store: PartnershipStore, agency_id: str, signing_key_id: str, *, now: datetime) -> SignedAgency:
    """End a superseded generation: it is no longer accepted, and its private keys are destroyed."""
    entry = _entry(store, agency_id)
    generation = next((g for g in entry.keys if g.signing_key_id == signing_key_id), None)
    if generation is not None and generation.status is KeyStatus.ACTIVE:
        raise ConfigError("rotate before retiring: the active generation cannot be retired")
    signed = _store_signed(store, with_status(entry, signing_key_id, KeyStatus.RETIRED, now=now))
    store.destroy_private_keys(agency_id, signing_key_id)
    return signed


def retire_agency(store: PartnershipStore, agency_id: str, *, now: datetime) -> SignedAgency:
    """
    Take an agency off the bus: every key generation becomes retired, so nothing is sealed for it or accepted from it.

    Its entry stays in the directory (signed, with its history of keys), so
    the audit trail and the agency's own stored records keep their meaning;
    running workers stop routing to it as soon as the entry is published.
    The private keys are kept: what it already received stays readable where
    it is held, until its retention ends.
    """
    entry = _entry(store, agency_id)
    keys = tuple(g.model_copy(update={"status": KeyStatus.RETIRED, "status_changed_at": now})
                 if g.status is not KeyStatus.RETIRED else g for g in entry.keys)
    retired = entry.model_copy(update={"keys": keys, "issued_at": now, "expires_at": now + ENTRY_LIFETIME})
    return _store_signed(store, retired)


def publish_entries(bootstrap: str, topic: str, entries: list[SignedAgency]) -> None:
    """Publish signed entries to the compacted directory topic, keyed by agency id."""
    produce_all(reliable_producer(bootstrap), [
        Output(topic=topic, key=e.entry.id.encode(), value=canonical_model(e)) for e in entries
    ])


def publish_change(store: PartnershipStore, signed: SignedAgency, *, bootstrap: str, names: TopicNames) -> None:
    """
    Make a directory change live: create the topics it needs, then publish its signed entry.

    In this order because running workers act on the entry as soon as they
    read it (the router seals for a new school at once, the inbox worker
    subscribes to its topic): the school's topics must exist by then.
    """
    from safebus.deploy.topics_admin import apply_topics  # administration only: keep the workers' imports small

    apply_topics(bootstrap, bus_topics(store.load_directory(), names))
    publish_entries(bootstrap, names.agencies, [signed])
    _log.info("directory_change_published", agency=signed.entry.id, issued_at=signed.entry.issued_at.isoformat())


def sync_from_topic(store: PartnershipStore, *, bootstrap: str, topic: str, partnership: str,
                    now: datetime) -> list[str]:
    """Rebuild the local directory from the topic (newest verified entry per agency); return refused agency ids."""
    kept, refused = latest_verified(read_topic(bootstrap, topic), store.trust_anchor(), now=now)
    store.save_entries(partnership, kept)
    return refused


def latest_verified(records: Iterable[Record], root: Ed25519PublicKey, *,
                    now: datetime) -> tuple[list[SignedAgency], list[str]]:
    """
    Per agency, the newest entry (by ``issued_at``) the root key signed; and the agencies with none.

    Anyone who can write to the topic can append to it, so neither the last
    record nor a record's shape is trusted: an unsigned entry written after
    the genuine one must not hide it (the agency would vanish from every
    directory synced after), nor may a genuine but older entry replayed later
    undo a newer one (a revocation).  Records that are not entries at all are
    skipped; none raises.
    """
    best: dict[str, SignedAgency] = {}
    seen: list[str] = []
    for record in records:
        try:
            signed = SignedAgency.model_validate_json(record.value)
        except ValueError:
            continue
        seen.append(signed.entry.id)
        try:
            verify_entry(signed, root, now=now)
        except ConfigError:
            continue
        current = best.get(signed.entry.id)
        if current is None or signed.entry.issued_at >= current.entry.issued_at:
            best[signed.entry.id] = signed
    refused = list(dict.fromkeys(agency for agency in seen if agency not in best))
    return list(best.values()), refused

"""The signed directory, and key rotation, retirement and revocation without downtime."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from safebus.app import agency_admin
from safebus.app.wiring import Settings, build_handler, build_police_publisher, directory_source
from safebus.directory import AgencyKind, KeyStatus
from safebus.envelope import open_envelope
from safebus.errors import ConfigError, InvalidEnvelope
from safebus.producers.synthetic import IncidentFactory
from safebus.records import DLQ_REASON, Origin
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership

POLICE = "northdale-police"


def _settings(partnership: Partnership) -> Settings:
    return Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames(prefix="t"))


def _reasons(partnership: Partnership, record_value: bytes, topic: str) -> list[str]:
    """What the router does with a record: the dead-letter reason, or 'routed'."""
    handler = build_handler(_settings(partnership), clock=lambda: FIXED_NOW)
    outputs = handler.handle(record_value, Origin(topic=topic, partition=0, offset=1))
    return [dict(o.headers).get(DLQ_REASON, b"routed").decode() for o in outputs]


class TestSignedEntries:
    def test_every_loaded_entry_is_vouched_for_by_the_root_key(self, partnership: Partnership) -> None:
        """A freshly created partnership loads whole: each entry verifies against the trust anchor."""
        assert len(partnership.store.load_directory(now=FIXED_NOW).agencies) == len(partnership.store.signed_entries())

    def test_an_entry_edited_without_re_signing_is_refused(self, partnership: Partnership) -> None:
        """Changing anything in an entry (here: a school's name) without the root key removes it from use."""
        raw = json.loads(partnership.store.directory_path.read_text())
        target = next(e for e in raw["entries"] if e["entry"]["id"] == "school-900101")
        target["entry"]["name"] = "Impostor Academy"
        partnership.store.directory_path.write_text(json.dumps(raw))
        directory = partnership.store.load_directory(now=FIXED_NOW)
        assert directory.get("school-900101") is None
        assert directory.get("school-900102") is not None

    def test_an_expired_entry_is_refused(self, partnership: Partnership) -> None:
        """Entries must be re-signed before they expire; a stale one is not trusted."""
        latest_expiry = max(s.entry.expires_at for s in partnership.store.signed_entries())
        assert partnership.store.load_directory(now=latest_expiry - timedelta(seconds=1)).agencies
        assert partnership.store.load_directory(now=latest_expiry).agencies == ()

    def test_an_entry_signed_by_another_root_is_refused(self, partnership: Partnership) -> None:
        """Only this partnership's root key vouches: a machine trusting another root accepts none of these."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        partnership.store.write_trust_anchor(Ed25519PrivateKey.generate().public_key())
        assert partnership.store.load_directory(now=FIXED_NOW).agencies == ()


class TestRotation:
    def test_old_events_stay_readable_and_new_ones_use_the_new_keys(
        self, partnership: Partnership, factory: IncidentFactory
    ) -> None:
        """After a force rotates, its earlier events still route, and new events are signed with the new key."""
        settings = _settings(partnership)
        before = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(factory.incident("schools"))
        old_key = partnership.directory.get(POLICE).current().signing_key_id  # type: ignore[union-attr]

        agency_admin.rotate_keys(partnership.store, POLICE, now=FIXED_NOW)

        after = build_police_publisher(settings, clock=lambda: FIXED_NOW).seal_incident(factory.incident("schools"))
        assert json.loads(after.value)["header"]["signing_key_id"] != old_key
        assert "routed" in _reasons(partnership, before.value, before.topic)
        assert "routed" in _reasons(partnership, after.value, after.topic)

    def test_router_reads_events_sealed_for_its_previous_key(
        self, partnership: Partnership, factory: IncidentFactory
    ) -> None:
        """A recipient's rotation does not strand envelopes already sealed for its old encryption key."""
        record = build_police_publisher(_settings(partnership), clock=lambda: FIXED_NOW).seal_incident(
            factory.incident("schools"))
        agency_admin.rotate_keys(partnership.store, "safebus-router", now=FIXED_NOW)
        assert "routed" in _reasons(partnership, record.value, record.topic)

    def test_retired_generation_is_no_longer_accepted_and_its_private_keys_are_gone(
        self, partnership: Partnership, factory: IncidentFactory
    ) -> None:
        """Retirement ends a superseded generation for good."""
        record = build_police_publisher(_settings(partnership), clock=lambda: FIXED_NOW).seal_incident(
            factory.incident("schools"))
        old_key = partnership.directory.get(POLICE).current().signing_key_id  # type: ignore[union-attr]
        agency_admin.rotate_keys(partnership.store, POLICE, now=FIXED_NOW)
        agency_admin.retire_key(partnership.store, POLICE, old_key, now=FIXED_NOW)
        assert _reasons(partnership, record.value, record.topic) == ["unknown-sender"]
        assert len(partnership.store.keyring(POLICE)) == 1

    def test_the_active_generation_cannot_be_retired(self, partnership: Partnership) -> None:
        """Retiring without rotating first would leave the agency unable to send."""
        key = partnership.directory.get(POLICE).current().signing_key_id  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match="rotate before retiring"):
            agency_admin.retire_key(partnership.store, POLICE, key, now=FIXED_NOW)


def test_events_signed_with_a_revoked_key_are_dead_lettered_as_such(
    partnership: Partnership, factory: IncidentFactory
) -> None:
    """A compromised key is revoked: anything it signed goes to the dead-letter topic with reason revoked-key."""
    record = build_police_publisher(_settings(partnership), clock=lambda: FIXED_NOW).seal_incident(
        factory.incident("schools"))
    key = partnership.directory.get(POLICE).current().signing_key_id  # type: ignore[union-attr]
    agency_admin.revoke_key(partnership.store, POLICE, key, now=FIXED_NOW)
    assert _reasons(partnership, record.value, record.topic) == ["revoked-key"]
    entry = partnership.store.load_directory(now=FIXED_NOW).get(POLICE)
    assert entry is not None
    assert [g.status for g in entry.keys] == [KeyStatus.REVOKED]


def test_a_running_component_sees_a_rotation_without_restarting(partnership: Partnership) -> None:
    """The directory source re-reads the signed directory when it changes."""
    current = directory_source(partnership.store, clock=lambda: FIXED_NOW)
    first = current().get(POLICE)
    agency_admin.rotate_keys(partnership.store, POLICE, now=FIXED_NOW)
    second = current().get(POLICE)
    assert first is not None
    assert second is not None
    assert len(second.keys) == len(first.keys) + 1


def test_school_accepts_alerts_only_from_the_router(partnership: Partnership) -> None:
    """Even a valid signature from another agency is refused on a school's inbox path."""
    from safebus.directory import OnlyFrom
    from safebus.envelope import seal

    directory = partnership.store.load_directory(now=FIXED_NOW)
    school = directory.school_by_urn("900101")
    assert school is not None
    raw = seal(b"{}", sender=partnership.police, recipient=school.public_keys(), event_id="e", event_type="t",
               schema_id="s", schema_version="1", topic="x", now=FIXED_NOW)
    with pytest.raises(InvalidEnvelope, match="unknown-sender"):
        open_envelope(raw, recipient=partnership.keys(school.id), senders=OnlyFrom(directory, directory.router().id))
    assert directory.of_kind(AgencyKind.SCHOOL)

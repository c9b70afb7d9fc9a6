"""The envelope: only the named recipient can open it, and any change is detected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from safebus.b64 import b64d, b64e
from safebus.envelope import MAX_ENVELOPE_BYTES, open_envelope, peek_header, seal
from safebus.errors import InvalidEnvelope
from safebus.keys import PrivateKeys

NOW = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
TOPIC = "safebus.ingress.force-a.da-incident"


@pytest.fixture
def force() -> PrivateKeys:
    return PrivateKeys.generate("force-a")


@pytest.fixture
def router() -> PrivateKeys:
    return PrivateKeys.generate("router")


def _seal(sender: PrivateKeys, recipient: PrivateKeys, plaintext: bytes = b'{"x": 1}', topic: str = TOPIC) -> bytes:
    return seal(plaintext, sender=sender, recipient=recipient.public(), event_id="evt-1", event_type="da-incident",
                schema_id="safebus:police/domestic-abuse-incident", schema_version="1.0.0", topic=topic, now=NOW)


class TestSealAndOpen:
    def test_recipient_reads_what_sender_sealed(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """The addressed recipient recovers the plaintext and the signed header."""
        raw = _seal(force, router, b"payload")
        opened = open_envelope(raw, recipient=router, senders={"force-a": force.public()}, topic=TOPIC)
        assert opened.plaintext == b"payload"
        assert opened.event_id == "evt-1"
        assert opened.producer == "force-a"
        assert opened.header["recipient_key_id"] == router.public().encryption_key_id

    def test_ciphertext_hides_the_plaintext(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """Whoever operates Kafka sees no payload text in the record."""
        raw = _seal(force, router, b"Ava Ashcombe")
        assert b"Ava" not in raw

    def test_another_recipient_cannot_open_it(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """A school holding its own keys cannot read an envelope sealed for someone else."""
        other = PrivateKeys.generate("router")  # same id, different keys: still refused
        raw = _seal(force, router)
        with pytest.raises(InvalidEnvelope, match="wrong-recipient"):
            open_envelope(raw, recipient=other, senders={"force-a": force.public()})

    def test_unknown_sender_is_refused(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """An envelope from an agency outside the directory is refused before decryption."""
        raw = _seal(force, router)
        with pytest.raises(InvalidEnvelope, match="unknown-sender"):
            open_envelope(raw, recipient=router, senders={})

    def test_impostor_key_is_refused(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """Claiming to be the force with a key the directory does not hold fails."""
        impostor = PrivateKeys.generate("force-a")
        raw = _seal(impostor, router)
        with pytest.raises(InvalidEnvelope, match="unknown-sender"):
            open_envelope(raw, recipient=router, senders={"force-a": force.public()})

    def test_replayed_onto_another_topic_is_refused(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """A genuine envelope copied to a different topic is refused."""
        raw = _seal(force, router)
        with pytest.raises(InvalidEnvelope, match="wrong-topic"):
            open_envelope(raw, recipient=router, senders={"force-a": force.public()}, topic="safebus.other")

    def test_oversized_input_is_refused_unparsed(self, force: PrivateKeys, router: PrivateKeys) -> None:
        """Inputs above the cap are refused before any parsing."""
        with pytest.raises(InvalidEnvelope, match="too-large"):
            open_envelope(b" " * (MAX_ENVELOPE_BYTES + 1), recipient=router, senders={})


class TestTampering:
    @pytest.mark.parametrize("member", ["wrapped_key", "nonce", "ciphertext", "signature"])
    def test_changed_byte_in_any_binary_member_fails(
        self, force: PrivateKeys, router: PrivateKeys, member: str
    ) -> None:
        """Flipping one bit anywhere in the signed material fails verification."""
        envelope = json.loads(_seal(force, router))
        data = bytearray(b64d(envelope[member]))
        data[len(data) // 2] ^= 0x01
        envelope[member] = b64e(bytes(data))
        with pytest.raises(InvalidEnvelope, match="bad-signature"):
            open_envelope(json.dumps(envelope).encode(), recipient=router, senders={"force-a": force.public()})

    @pytest.mark.parametrize("field", ["event_id", "event_type", "schema_id", "topic", "created_at", "recipient"])
    def test_changed_header_fails(self, force: PrivateKeys, router: PrivateKeys, field: str) -> None:
        """Every header field is covered by the signature."""
        envelope = json.loads(_seal(force, router))
        envelope["header"][field] += "x"
        with pytest.raises(InvalidEnvelope, match="bad-signature"):
            open_envelope(json.dumps(envelope).encode(), recipient=router, senders={"force-a": force.public()})

    def test_ciphertext_swapped_between_envelopes_fails_even_if_resigned(
        self, force: PrivateKeys, router: PrivateKeys
    ) -> None:
        """The header is the AEAD's associated data: a re-signed splice of another event's ciphertext fails."""
        first = json.loads(_seal(force, router, b"first"))
        second = json.loads(seal(b"second", sender=force, recipient=router.public(), event_id="evt-2",
                                 event_type="da-incident", schema_id="safebus:police/domestic-abuse-incident",
                                 schema_version="1.0.0", topic=TOPIC, now=NOW))
        spliced = {"header": first["header"], "wrapped_key": second["wrapped_key"], "nonce": second["nonce"],
                   "ciphertext": second["ciphertext"]}
        from safebus.jcs import canonical_json

        spliced["signature"] = b64e(force.signing.sign(canonical_json(spliced)))
        with pytest.raises(InvalidEnvelope, match="undecryptable"):
            open_envelope(canonical_json(spliced), recipient=router, senders={"force-a": force.public()})

    @pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{}", b'{"header": {}}', b"\xff\xfe", b'{"header":1}'])
    def test_garbage_is_malformed(self, router: PrivateKeys, raw: bytes) -> None:
        """Anything that is not an envelope is refused as malformed, never with a crash."""
        with pytest.raises(InvalidEnvelope, match="malformed"):
            open_envelope(raw, recipient=router, senders={})


def test_a_header_that_is_not_valid_unicode_is_malformed(force: PrivateKeys, router: PrivateKeys) -> None:
    """A lone surrogate (which a JSON escape can spell) has no canonical form: refused, never a crash."""
    envelope = json.loads(_seal(force, router))
    raw = json.dumps({**envelope, "header": {**envelope["header"], "event_id": "evt-\ud800"}}).encode()
    assert b"\\ud800" in raw
    with pytest.raises(InvalidEnvelope, match="malformed"):
        open_envelope(raw, recipient=router, senders={"force-a": force.public()})


def test_peek_header_reads_event_id_without_keys(force: PrivateKeys, router: PrivateKeys) -> None:
    """Dead-letter handling can name the event without being able to open it."""
    header = peek_header(_seal(force, router))
    assert header is not None
    assert header["event_id"] == "evt-1"
    assert peek_header(b"garbage") is None

"""Signed checkpoints: the Go note package's published example, a round trip, and every way a note is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebus.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from safebus.merkle import MerkleTree, leaf_hash

VECTORS: Any = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "merkle" / "signed_note.json").read_text())
PETER = VECTORS["peter_neumann"]
ENOCH = VECTORS["enoch_root"]

ORIGIN = "safebus.example/audit-log"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def checkpoint() -> Checkpoint:
    tree = MerkleTree()
    tree.extend(leaf_hash(f"fact {i}".encode()) for i in range(5))
    return Checkpoint(ORIGIN, tree.size, tree.root())


def _sign_raw(body: str, signer: NoteSigner) -> bytes:
    """Sign arbitrary note text, bypassing Checkpoint's validation (to test what the reader refuses)."""
    return sign_note(body.encode(), signer)


class TestPublishedExample:
    def test_signing_reproduces_the_go_note(self) -> None:
        """Our Ed25519 signer, given the published PeterNeumann key, writes the published note byte for byte."""
        signer = NoteSigner.from_text(PETER["signer_key"])
        assert signer.key_id.hex() == PETER["key_id"]
        assert sign_note(PETER["text"].encode(), signer) == PETER["signed_note"].encode()

    def test_key_id_and_verifier_key_format(self) -> None:
        """The key ID is SHA-256(name || 0x0A || 0x01 || key)[:4], and the verifier key text round-trips."""
        verifier = NoteVerifier.from_text(PETER["verifier_key"])
        assert verifier.name == "PeterNeumann"
        assert verifier.key_id.hex() == PETER["key_id"]
        raw = base64.b64decode(PETER["verifier_key"].split("+")[2])[1:]
        assert key_id("PeterNeumann", raw).hex() == PETER["key_id"]
        assert verifier.text == PETER["verifier_key"]
        assert NoteSigner.from_text(PETER["signer_key"]).verifier().text == PETER["verifier_key"]

    def test_published_note_opens_with_either_key(self) -> None:
        """The doubly signed note opens for PeterNeumann (EnochRoot's line ignored) and for EnochRoot."""
        note = (PETER["signed_note"] + ENOCH["signature_line"]).encode()
        assert open_note(note, NoteVerifier.from_text(PETER["verifier_key"])) == PETER["text"].encode()
        assert open_note(note, NoteVerifier.from_text(ENOCH["verifier_key"])) == PETER["text"].encode()

    @pytest.mark.parametrize("vkey", VECTORS["bad_verifier_keys"].values(), ids=list(VECTORS["bad_verifier_keys"]))
    def test_published_bad_verifier_keys(self, vkey: str) -> None:
        """A key of the wrong length or an unknown algorithm is refused even when its key ID is consistent."""
        with pytest.raises(CheckpointError, match="verifier key 'PeterNeumann'"):
            NoteVerifier.from_text(vkey)

    def test_every_mangled_verifier_key_is_refused(self) -> None:
        """Like Go's TestNewVerifier: every proper substring and every one-character change is refused."""
        vkey = PETER["verifier_key"]
        mangled = {vkey[i:j] for i in range(len(vkey)) for j in range(i + 1, len(vkey) + 1)} - {vkey}
        mangled |= {vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1:] for i in range(len(vkey))}
        accepted = []
        for text in sorted(mangled):
            try:
                NoteVerifier.from_text(text)
            except CheckpointError:
                continue
            accepted.append(text)
        assert accepted == []

    def test_tlog_checkpoint_example_body_parses(self) -> None:
        """The example body of c2sp.org/tlog-checkpoint parses to its origin, size and 32-byte root."""
        example = VECTORS["tlog_checkpoint_example"]
        parsed = Checkpoint.parse(example["body"].encode())
        assert parsed == Checkpoint(example["origin"], example["size"], base64.b64decode(example["root_hash_base64"]))
        assert parsed.body() == example["body"].encode()


class TestRoundTrip:
    def test_signed_checkpoint_opens_to_the_same_checkpoint(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """sign_checkpoint then open_checkpoint gives back the checkpoint, and the note has the C2SP shape."""
        note = sign_checkpoint(checkpoint, signer)
        assert open_checkpoint(note, signer.verifier(), origin=ORIGIN) == checkpoint
        lines = note.decode().split("\n")
        assert lines[:4] == [ORIGIN, "5", base64.b64encode(checkpoint.root_hash).decode(), ""]
        assert lines[4].startswith(f"\u2014 {ORIGIN} ")
        assert lines[5] == ""
        assert base64.b64decode(lines[4].split(" ")[2])[:4] == signer.key_id

    def test_extension_lines_round_trip(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """Optional extension lines are signed and returned in order."""
        extended = Checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root_hash, ("ext one", "ext two"))
        note = sign_checkpoint(extended, signer)
        assert open_checkpoint(note, signer.verifier(), origin=ORIGIN).extensions == ("ext one", "ext two")

    def test_verifier_from_published_text(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """A verifier rebuilt from the published verifier key text opens the note too."""
        verifier = NoteVerifier.from_text(signer.verifier().text)
        assert open_checkpoint(sign_checkpoint(checkpoint, signer), verifier, origin=ORIGIN) == checkpoint

    def test_verifier_from_raw_public_key(self, checkpoint: Checkpoint) -> None:
        """from_public_key accepts the 32 raw bytes as well as a key object."""
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes_raw()
        verifier = NoteVerifier.from_public_key(ORIGIN, raw)
        assert verifier.key_id == NoteVerifier.from_public_key(ORIGIN, private.public_key()).key_id
        assert open_checkpoint(sign_checkpoint(checkpoint, NoteSigner(ORIGIN, private)), verifier,
                               origin=ORIGIN) == checkpoint

    def test_empty_tree(self, signer: NoteSigner) -> None:
        """A log with no entries has size 0 and the empty root, and still signs a checkpoint."""
        empty = Checkpoint(ORIGIN, 0, MerkleTree().root())
        assert open_checkpoint(sign_checkpoint(empty, signer), signer.verifier(), origin=ORIGIN) == empty


class TestRejected:
    def test_wrong_origin(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """A genuine checkpoint of another log (same key) is not accepted for ours."""
        other = Checkpoint("safebus.example/other-log", checkpoint.size, checkpoint.root_hash)
        with pytest.raises(CheckpointError, match=r"for origin 'safebus\.example/other-log', expected"):
            open_checkpoint(sign_checkpoint(other, signer), signer.verifier(), origin=ORIGIN)

    @pytest.mark.parametrize(("size", "message"), [
        ("12a", "not a decimal"), ("+5", "not a decimal"), ("-1", "not a decimal"), (" 5", "not a decimal"),
        ("05", "not a decimal"), ("", "not a decimal"), ("\u0663", "not a decimal"), ("5.0", "not a decimal"),
        ("18446744073709551616", "not a decimal below 2\\*\\*64"),
    ])
    def test_malformed_size(self, signer: NoteSigner, checkpoint: Checkpoint, size: str, message: str) -> None:
        """The size is ASCII decimal without sign, spaces or leading zeros, below 2**64."""
        root = base64.b64encode(checkpoint.root_hash).decode()
        note = _sign_raw(f"{ORIGIN}\n{size}\n{root}\n", signer)
        with pytest.raises(CheckpointError, match=message):
            open_checkpoint(note, signer.verifier(), origin=ORIGIN)

    @pytest.mark.parametrize(("root", "message"), [
        (base64.b64encode(bytes(31)).decode(), "31 bytes, not 32"),
        (base64.b64encode(bytes(33)).decode(), "33 bytes, not 32"),
        ("not base64!", "not valid base64"),
        (base64.b64encode(bytes(32)).decode().rstrip("="), "not valid base64"),
        (base64.b64encode(bytes(32)).decode()[:-2] + "B=", "not canonical base64"),
        (base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "not valid base64"),
    ])
    def test_malformed_root_hash(self, signer: NoteSigner, root: str, message: str) -> None:
        """The root is canonical standard base64 of exactly 32 bytes."""
        with pytest.raises(CheckpointError, match=message):
            open_checkpoint(_sign_raw(f"{ORIGIN}\n5\n{root}\n", signer), signer.verifier(), origin=ORIGIN)

    def test_missing_final_newline(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """A body without its final newline is refused by the parser, and as a note has no text/signature split."""
        body = checkpoint.body()[:-1]
        with pytest.raises(CheckpointError, match="does not end with a newline"):
            Checkpoint.parse(body)
        line = signer.signature_line(body).encode()
        with pytest.raises(CheckpointError, match="no blank line"):
            open_checkpoint(body + b"\n" + line, signer.verifier(), origin=ORIGIN)

    @pytest.mark.parametrize(("body", "message"), [
        (f"{ORIGIN}\n5\n", "2 lines"),
        (f"\n5\n{base64.b64encode(bytes(32)).decode()}\n", "origin line is empty"),
        (f"{ORIGIN}\n5\n{base64.b64encode(bytes(32)).decode()}\n\nextension\n", "empty extension line"),
    ])
    def test_malformed_lines(self, signer: NoteSigner, body: str, message: str) -> None:
        """Origin, size and root are all required and non-empty; extension lines are non-empty."""
        with pytest.raises(CheckpointError, match=message):
            open_checkpoint(_sign_raw(body, signer), signer.verifier(), origin=ORIGIN)

    def test_no_signature_by_the_expected_key(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """A checkpoint signed only by some other key (even one using our name) is refused."""
        impostor = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        with pytest.raises(CheckpointError, match=f"no signature by {ORIGIN}\\+{signer.key_id.hex()}"):
            open_checkpoint(sign_checkpoint(checkpoint, impostor), signer.verifier(), origin=ORIGIN)

    def test_bad_signature(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """A signature line with our name and key ID whose signature does not verify rejects the note."""
        note = sign_checkpoint(checkpoint, signer).decode()
        body, line = note.rsplit("\n\n", 1)
        name_part, encoded = line.rstrip("\n").rsplit(" ", 1)
        raw = bytearray(base64.b64decode(encoded))
        raw[10] ^= 0x01
        forged = f"{body}\n\n{name_part} {base64.b64encode(bytes(raw)).decode()}\n".encode()
        with pytest.raises(CheckpointError, match="invalid signature by"):
            open_checkpoint(forged, signer.verifier(), origin=ORIGIN)

    def test_tampered_body(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """Changing the size after signing breaks the signature."""
        note = sign_checkpoint(checkpoint, signer).replace(b"\n5\n", b"\n6\n", 1)
        with pytest.raises(CheckpointError, match="invalid signature by"):
            open_checkpoint(note, signer.verifier(), origin=ORIGIN)

    def test_one_bad_signature_among_good_ones_rejects(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """Every line that matches our key is verified: a good one does not excuse a bad one."""
        note = sign_checkpoint(checkpoint, signer)
        bad = signer.signature_line(b"some other text\n").encode()
        with pytest.raises(CheckpointError, match="invalid signature by"):
            open_checkpoint(note + bad, signer.verifier(), origin=ORIGIN)

    @pytest.mark.parametrize(("note", "message"), [
        (b"origin\n5\nroot\n", "no blank line"),
        (b"origin\n5\nroot\n\n", "signature block is empty"),
        (b"text\n\n\xe2\x80\x94 name AAAAAAA=", "does not end with a newline"),
        (b"text\n\n- name AAAAAAA=\n", "does not start with an em dash"),
        (b"text\n\n\xe2\x80\x94 bad+name AAAAAAA=\n", "invalid key name"),
        (b"text\n\n\xe2\x80\x94 name AAAA\n", "too short"),
        (b"text\n\n\xe2\x80\x94 name ***\n", "not valid base64"),
        (b"text\n\n\xe2\x80\x94 name\n", "too short"),
        (b"\x01text\n\n\xe2\x80\x94 name AAAAAAA=\n", "control character U\\+0001"),
        (b"text\r\n\n\xe2\x80\x94 name AAAAAAA=\n", "control character U\\+000D"),
        (b"\xfftext\n\n\xe2\x80\x94 name AAAAAAA=\n", "not valid UTF-8"),
        (b"text\n\n" + "\u2014 name AAAAAAA=\n".encode() * (MAX_SIGNATURES + 1), "over the limit"),
        (b"x" * (64 * 1024 + 1), "over the 65536-byte limit"),
    ])
    def test_malformed_notes(self, signer: NoteSigner, note: bytes, message: str) -> None:
        """Encoding, the blank-line split and the syntax of every signature line are checked before trusting it."""
        with pytest.raises(CheckpointError, match=message):
            open_note(note, signer.verifier())

    def test_unknown_keys_are_ignored(self, signer: NoteSigner, checkpoint: Checkpoint) -> None:
        """Lines from other keys, or sharing only our name or only our key ID, neither help nor hurt (C2SP MUST)."""
        note = sign_checkpoint(checkpoint, signer)
        witness = NoteSigner("witness.example/w1", Ed25519PrivateKey.generate())
        same_name = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        same_id_other_name = "\u2014 someone.else " + base64.b64encode(signer.key_id + bytes(64)).decode() + "\n"
        garbage_sig = "\u2014 witness.example/w2 " + base64.b64encode(b"\x00\x01\x02\x03" + b"junk").decode() + "\n"
        extra = (witness.signature_line(checkpoint.body()) + same_name.signature_line(b"other\n")
                 + same_id_other_name + garbage_sig).encode()
        assert open_checkpoint(note + extra, signer.verifier(), origin=ORIGIN) == checkpoint
        with pytest.raises(CheckpointError, match="no signature by"):
            open_note(checkpoint.body() + b"\n" + extra, signer.verifier())


class TestConstruction:
    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"origin": ""}, "origin"),
        ({"origin": "two\nlines"}, "origin"),
        ({"size": -1}, "size"),
        ({"size": 2**64}, "size"),
        ({"size": True}, "size"),
        ({"root_hash": bytes(31)}, "root hash"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ("a\nb",)}, "extension"),
    ])
    def test_invalid_checkpoints_cannot_be_built(self, kwargs: dict[str, Any], message: str) -> None:
        """A Checkpoint always has a well-formed body: bad fields fail at construction, not at signing."""
        fields: dict[str, Any] = {"origin": ORIGIN, "size": 1, "root_hash": bytes(32), **kwargs}
        with pytest.raises(CheckpointError, match=message):
            Checkpoint(**fields)

    @pytest.mark.parametrize("name", ["", "with space", "with+plus", "tab\there", "nbsp\u00a0here"])
    def test_invalid_key_names(self, name: str) -> None:
        """Key names are non-empty and contain no Unicode space and no '+' (they are '+'-separated in keys)."""
        with pytest.raises(CheckpointError, match="invalid key name"):
            NoteSigner(name, Ed25519PrivateKey.generate())

    def test_sign_note_needs_newline_and_signer(self, signer: NoteSigner) -> None:
        """Note text must end in a newline, and a note without signatures is not a signed note."""
        with pytest.raises(CheckpointError, match="end with a newline"):
            sign_note(b"no newline", signer)
        with pytest.raises(CheckpointError, match="at least one signer"):
            sign_note(b"text\n")

    def test_signer_key_text_must_match_its_key_id(self) -> None:
        """A signer key whose key ID does not match the derived public key is refused."""
        wrong = PETER["signer_key"].replace("c74f20a3", "c74f20a4")
        with pytest.raises(CheckpointError, match="does not match the derived public key"):
            NoteSigner.from_text(wrong)

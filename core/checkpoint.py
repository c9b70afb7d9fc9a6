"""
Signed tree heads: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes, signed with Ed25519.

A checkpoint commits the log to one tree: its origin (the log's name), its
size and its RFC 9162 root hash.  Anyone holding the log's verifier key can
check an inclusion or consistency proof against it offline, and witnesses can
cosign it, so the log cannot show two histories.  We use the formats the
transparency-log ecosystem already reads (Go's ``golang.org/x/mod/sumdb/note``,
Trillian/Tessera, Sigstore, the witness network) rather than inventing one.

Body (c2sp.org/tlog-checkpoint)::

    <origin>\\n
    <tree size, ASCII decimal, no leading zeros>\\n
    <root hash, standard base64>\\n
    [<extension line>\\n ...]

Signed note (c2sp.org/signed-note): the body, a blank line, then one line per
signature, ``— <key name> <base64(key ID || signature)>\\n``.  The key ID is
``SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]``, and a
verifier key is written ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

Choices, all from the specs:

- **Signatures from unknown keys are ignored**, including lines that share
  only the name or only the key ID with ours (signed-note: MUST).  This is
  what lets a witness add its cosignature or the log rotate its key without
  breaking existing verifiers.  Every line that does match our key is verified,
  and one bad signature rejects the whole note (signed-note: SHOULD).
- **Nothing in the body is read until a signature has verified** (signed-note:
  the text MUST be ignored unless signed by a trusted key).  Only then is the
  body parsed and the origin compared with the one the caller expects.
- **Parsing is strict.** The size is ``0`` or ``[1-9][0-9]*`` (ASCII only:
  Python's ``int()`` would also take ``"٣"``, ``" 3"`` and ``"+3"``) and below
  2**64.  The root is canonical base64 of exactly 32 bytes, and extension lines
  are non-empty.  This way one tree head has exactly one byte encoding.
- **Inputs are capped**: a note is refused above `MAX_NOTE_BYTES` or
  `MAX_SIGNATURES` lines before any signature is checked, so a hostile note
  cannot make a verifier spend unbounded time.

All failures raise `CheckpointError` (a `ValueError` and `SafebusError`) with
a message that says which check failed.  A checkpoint is public, so the
message reveals nothing secret.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from safebus.b64 import std_b64d, std_b64e
from safebus.errors import SafebusError
from safebus.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "NoteSigner",
    "NoteVerifier",
    "key_id",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type byte for Ed25519 (c2sp.org/signed-note, "Signature types")."""

MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint is ~100 bytes plus ~100 per Ed25519 signature; 64 KiB leaves room for post-quantum cosignatures."""

MAX_SIGNATURES = 100
"""Signature lines accepted per note: signed-note requires at least 16; Go's note package stops at 100."""

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SIZE_PATTERN = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII digits only (`\d` would match any Unicode digit)
_CONTROL = re.compile(r"[\x00-\x1f]")
_ED25519_SIGNATURE_BYTES = 64


class CheckpointError(SafebusError, ValueError):
    """A checkpoint, signed note or key is malformed, or a signature does not verify."""


# --------------------------------------------------------------------------- keys


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte signed-note key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key).digest()[:4]


def _check_key_name(name: str) -> None:
    """Key names are non-empty with no Unicode space and no '+' (signed-note); we also refuse controls."""
    if not name or "+" in name or any(char.isspace() for char in name) or _CONTROL.search(name):
        raise CheckpointError(f"invalid key name {name!r}: must be non-empty, without spaces, '+' or controls")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64decode(text: str, what: str, *, canonical: bool = False) -> bytes:
    """Standard base64 with padding and nothing else; `canonical` also refuses non-zero padding bits."""
    try:
        raw = std_b64d(text)
    except ValueError as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    if canonical and std_b64e(raw) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


class NoteVerifier:
    """
    One trusted Ed25519 key of a signed note: its name, its key ID and the public key.

    Build it from the verifier-key text a log publishes (`from_text`) or from a
    public key you hold (`from_public_key`); `text` gives the published form.
    """

    __slots__ = ("key_id", "name", "public_key")

    def __init__(self, *, name: str, public_key: Ed25519PublicKey) -> None:
        _check_key_name(name)
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, _raw_public(public_key))

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes) -> NoteVerifier:
        """A verifier for `name` and an Ed25519 public key (a key object or its 32 raw bytes)."""
        if isinstance(public_key, bytes):
            if len(public_key) != 32:
                raise CheckpointError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
            public_key = Ed25519PublicKey.from_public_bytes(public_key)
        return cls(name=name, public_key=public_key)

    @classmethod
    def from_text(cls, vkey: str) -> NoteVerifier:
        """
        Parse a verifier key, ``<name>+<8 hex digits key ID>+<base64(0x01 || 32-byte public key)>``.

        Raises `CheckpointError` if any part is malformed, the algorithm is not
        Ed25519, or the key ID does not match the name and key.
        """
        name, _, rest = vkey.partition("+")
        id_hex, _, key_b64 = rest.partition("+")
        _check_key_name(name)
        if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise CheckpointError(f"verifier key {name!r}: key ID {id_hex!r} is not 8 hex digits")
        raw = _b64decode(key_b64, f"verifier key {name!r}")
        if not raw or raw[0] != ED25519_SIGNATURE_TYPE:
            raise CheckpointError(f"verifier key {name!r}: unknown signature type (only 0x01, Ed25519)")
        if len(raw) != 33:
            raise CheckpointError(f"verifier key {name!r}: Ed25519 public key is {len(raw) - 1} bytes, not 32")
        verifier = cls.from_public_key(name, raw[1:])
        if verifier.key_id != bytes.fromhex(id_hex):
            raise CheckpointError(f"verifier key {name!r}: key ID {id_hex} does not match the name and key "
                                  f"({verifier.key_id.hex()})")
        return verifier

    @property
    def text(self) -> str:
        """The verifier key as published: ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = std_b64e(bytes([ED25519_SIGNATURE_TYPE]) + _raw_public(self.public_key))
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether `signature` (the 64 bytes after the key ID) is this key's Ed25519 signature of `text`."""
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            return False
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.text!r})"


class NoteSigner:
    """An Ed25519 signing key with its signed-note name (the log's origin, by tlog-checkpoint convention)."""

    __slots__ = ("_private_key", "key_id", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(name)
        self.name = name
        self._private_key = private_key
        self.key_id = key_id(name, _raw_public(private_key.public_key()))

    @classmethod
    def from_text(cls, skey: str) -> NoteSigner:
        """
        Parse a Go ``note`` signer key, ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>``.

        Raises `CheckpointError` if it is malformed or the key ID does not
        match the name and the derived public key.
        """
        if not skey.startswith("PRIVATE+KEY+"):
            raise CheckpointError("signer key does not start with PRIVATE+KEY+")
        name, _, rest = skey.removeprefix("PRIVATE+KEY+").partition("+")
        id_hex, _, key_b64 = rest.partition("+")
        _check_key_name(name)
        if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise CheckpointError(f"signer key {name!r}: key ID is not 8 hex digits")
        raw = _b64decode(key_b64, f"signer key {name!r}")
        if len(raw) != 33 or raw[0] != ED25519_SIGNATURE_TYPE:
            raise CheckpointError(f"signer key {name!r}: not 0x01 followed by a 32-byte Ed25519 seed")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id != bytes.fromhex(id_hex):
            raise CheckpointError(f"signer key {name!r}: key ID {id_hex} does not match the derived public key")
        return signer

    def verifier(self) -> NoteVerifier:
        """The matching verifier (publish its `NoteVerifier.text`)."""
        return NoteVerifier(name=self.name, public_key=self._private_key.public_key())

    def signature_line(self, text: bytes) -> str:
        """``— <name> <base64(key ID || Ed25519 signature of text)>\\n``."""
        signature = std_b64e(self.key_id + self._private_key.sign(text))
        return f"{_SIGNATURE_PREFIX}{self.name} {signature}\n"

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()!r})"


# --------------------------------------------------------------------------- signed notes


def _check_note_text(text: bytes, what: str) -> str:
    """Valid UTF-8 with no ASCII control character except newline (signed-note "Format")."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what} is not valid UTF-8") from exc
    control = _CONTROL.search(decoded.replace("\n", ""))
    if control:
        raise CheckpointError(f"{what} contains the control character U+{ord(control.group()):04X}")
    return decoded


def sign_note(text: bytes, *signers: NoteSigner) -> bytes:
    """
    A signed note: `text` (which must end in a newline), a blank line, then one signature line per signer.

    Raises `CheckpointError` if the text is not valid note text or no signer is given.
    """
    if not signers:
        raise CheckpointError("a signed note needs at least one signer")
    _check_note_text(text, "note text")
    if not text.endswith(b"\n"):
        raise CheckpointError("note text must end with a newline")
    return text + b"\n" + "".join(signer.signature_line(text) for signer in signers).encode("utf-8")


def open_note(note: bytes, verifier: NoteVerifier) -> bytes:
    """
    Return the text of `note` once a signature by `verifier`'s key has verified.

    Follows c2sp.org/signed-note:

    (1) size caps: at most `MAX_NOTE_BYTES`;
    (2) valid UTF-8, no control characters but newline;
    (3) the text ends at the last blank line, and signature lines follow, each ending in a newline;
    (4) every signature line is well formed (em dash, valid key name, base64 of ≥ 5 bytes),
        with at most `MAX_SIGNATURES` of them;
    (5) lines whose name *and* key ID match `verifier` are verified, and one failure rejects
        the note; all other lines are ignored;
    (6) at least one signature by `verifier` must have verified.

    Raises `CheckpointError` naming the failed step.
    """
    # (1): size caps, before any work.
    if len(note) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note is {len(note)} bytes, over the {MAX_NOTE_BYTES}-byte limit")
    # (2): encoding.
    decoded = _check_note_text(note, "signed note")
    # (3): split text from signatures at the last blank line.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise CheckpointError("malformed note: no blank line between text and signatures")
    text, block = decoded[:split + 1], decoded[split + 2:]
    if not block or not block.endswith("\n"):
        raise CheckpointError("malformed note: signature block is empty or does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"malformed note: {len(lines)} signature lines, over the limit of {MAX_SIGNATURES}")
    text_bytes = text.encode("utf-8")
    verified = 0
    for number, line in enumerate(lines, start=1):
        # (4): syntax of every line, known key or not.
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError(f"malformed note: signature line {number} does not start with an em dash")
        name, _, encoded = line[len(_SIGNATURE_PREFIX):].partition(" ")
        try:
            _check_key_name(name)
        except CheckpointError as exc:
            raise CheckpointError(f"malformed note: signature line {number}: {exc}") from None
        raw = _b64decode(encoded, f"signature line {number}") if encoded else b""
        if len(raw) < 5:
            raise CheckpointError(f"malformed note: signature line {number} is too short")
        # (5): only our key (name and key ID both) is verified; others are ignored.
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue
        if not verifier.verify(text_bytes, raw[4:]):
            raise CheckpointError(f"invalid signature by {verifier.name}+{verifier.key_id.hex()}")
        verified += 1
    # (6)
    if not verified:
        raise CheckpointError(f"note has no signature by {verifier.name}+{verifier.key_id.hex()}")
    return text_bytes


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """
    A log's tree head: origin, tree size and RFC 9162 root hash, plus optional extension lines.

    Construction validates every field, so a `Checkpoint` always has a
    well-formed `body`; raises `CheckpointError` otherwise.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _CONTROL.search(self.origin):
            raise CheckpointError(f"checkpoint origin {self.origin!r} must be non-empty, one line, no controls")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint size {self.size!r} is not an integer between 0 and 2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            if not line or _CONTROL.search(line):
                raise CheckpointError(f"checkpoint extension line {line!r} must be non-empty, one line, no controls")

    def body(self) -> bytes:
        """The checkpoint text that gets signed (c2sp.org/tlog-checkpoint), ending in a newline."""
        lines = [self.origin, str(self.size), std_b64e(self.root_hash), *self.extensions]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """
        Parse a checkpoint body strictly; raises `CheckpointError` saying what is wrong.

        This reads an *unverified* body: use `open_checkpoint` on anything that
        came from outside.
        """
        text = _check_note_text(body, "checkpoint body")
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint body has {len(lines)} lines, needs origin, size and root hash")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise CheckpointError("checkpoint origin line is empty")
        if not _SIZE_PATTERN.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal below 2**64 without leading zeros")
        root_hash = _b64decode(root_text, "checkpoint root hash", canonical=True)
        if len(root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
        for line in extensions:
            if not line:
                raise CheckpointError("checkpoint has an empty extension line")
        return cls(origin=origin, size=int(size_text), root_hash=root_hash, extensions=tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """The signed note of `checkpoint`: its body, a blank line and `signer`'s signature line."""
    return sign_note(checkpoint.body(), signer)


def open_checkpoint(note: bytes, verifier: NoteVerifier, *, origin: str) -> Checkpoint:
    """
    Verify a signed checkpoint from the log `origin` and return it.

    (1) `open_note`: a signature by `verifier` verifies (unknown keys ignored);
    (2) the verified text parses as a checkpoint body (`Checkpoint.parse`);
    (3) its origin is exactly `origin`, so a checkpoint of another log signed
        with a shared key is not accepted for this one.

    Raises `CheckpointError` naming the failed step.
    """
    # (1)
    text = open_note(note, verifier)
    # (2)
    checkpoint = Checkpoint.parse(text)
    # (3)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint

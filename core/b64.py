"""
The one base64: both alphabets safebus writes, each strict about what it reads.

Two encodings are in use, and each is fixed by a format someone else reads:

- **unpadded base64url** (RFC 4648 §5, no ``=``) for every byte string inside a JSON document we
  sign: envelopes, directory entries, key files, web tokens (`b64e`, `b64d`);
- **standard padded base64** (RFC 4648 §4) where an outside format says so: C2SP signed notes and
  checkpoints, the scrypt hashes in account files, the audit export (`std_b64e`, `std_b64d`).

Python's own decoders are lenient: ``urlsafe_b64decode`` drops any character outside its alphabet
and both accept non-zero padding bits, so several texts decode to the same bytes.  A signature
covers the text, not the bytes, so leniency would let one signed value be spelt several ways; the
decoders here accept exactly the text the encoder writes and raise `ValueError` for anything else.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64d", "b64e", "std_b64d", "std_b64e"]

_URL_SAFE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")
_SPARE_BITS = {2: 0b1111, 3: 0b11}
"""Unpadded text of length 4k+2 (4k+3) ends in a character whose low 4 (2) bits carry no data: they must be 0."""


def b64e(data: bytes) -> str:
    """Encode bytes as unpadded base64url (the encoding of byte strings in signed JSON)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode unpadded base64url exactly as `b64e` writes it; raise ValueError for any other text."""
    if not isinstance(text, str) or not _URL_SAFE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("expected unpadded base64url text")
    spare = _SPARE_BITS.get(len(text) % 4, 0)
    if spare and _URL_SAFE_ALPHABET.index(text[-1]) & spare:  # checked on the last character, not by re-encoding
        raise ValueError("base64url text is not canonical (non-zero padding bits)")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def std_b64e(data: bytes) -> str:
    """Encode bytes as standard, padded base64."""
    return base64.b64encode(data).decode("ascii")


def std_b64d(text: str, *, canonical: bool = False) -> bytes:
    """Decode standard padded base64 and nothing else; `canonical` also refuses non-zero padding bits."""
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc
    if canonical and std_b64e(raw) != text:
        raise ValueError("base64 text is not canonical (non-zero padding bits)")
    return raw

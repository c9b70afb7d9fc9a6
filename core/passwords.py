"""
Salted scrypt hashes of secrets: how every password and bearer credential in safebus is stored and checked.

The web sign-ins (`safebus.account_files`: Key Adults, officers) and the
ingress gateway's bearer credentials (`safebus.producers.gateway`) keep the
same stored format and must be checked the same way; one module means one set
of parameters, one constant-time comparison and one concurrency cap to review.

Why it is built this way:

- **scrypt, 16 MiB, ~50 ms, a fresh 128-bit salt per secret.**  A copied file
  does not give the secrets away, and equal secrets do not look equal.  The
  parameters are stored with each hash (``kdf``, ``n``, ``r``, ``p``), so
  existing files keep verifying if the defaults ever change.
- **Constant-time comparison**, and an unknown id is checked against a dummy
  hash (`Verifier.verify` with ``None``), so neither the answer nor its timing
  says whether the id exists.
- **A cap on concurrent scrypt runs** (`KDF_SLOTS` per `Verifier`): each run
  takes 16 MiB, so a burst of guesses must not exhaust memory.
- **Who first, then the hash, then when.**  A stored record lists the holder's
  own fields, then the hash fields, then its timestamps (`ScryptHash.trailing_fields`):
  the files have always read that way, and a rewrite should change no line it need not.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from safebus.b64 import std_b64d, std_b64e

__all__ = ["HASH_BYTES", "KDF_SLOTS", "SCRYPT_N", "SCRYPT_P", "SCRYPT_R", "ScryptHash", "Verifier", "hash_secret"]

SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES = 2**14, 8, 1, 32  # 16 MiB, ~50 ms on this project's machines
KDF_SLOTS = 4
"""Concurrent scrypt runs allowed per `Verifier`: each takes 16 MiB, so a burst of guesses must not exhaust memory."""

_HASH_FIELDS = ("kdf", "n", "r", "p", "salt", "hash")


def _scrypt(secret: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES)


class ScryptHash(BaseModel):
    """
    A stored secret: its salted scrypt hash and the parameters that made it, never the secret.

    Each kind of holder subclasses this with its own fields; `trailing_fields`
    names those written after the hash fields (its timestamps).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    trailing_fields: ClassVar[tuple[str, ...]] = ()

    kdf: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2**10)
    r: int = Field(ge=1)
    p: int = Field(ge=1)
    salt: str
    hash: str

    def matches(self, secret: str) -> bool:
        """Whether `secret` hashes to this hash (constant-time comparison)."""
        derived = _scrypt(secret, std_b64d(self.salt), n=self.n, r=self.r, p=self.p)
        return hmac.compare_digest(derived, std_b64d(self.hash))

    @model_serializer(mode="wrap")
    def _hash_fields_in_place(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """
        Write the holder's own fields, then the hash fields, then `trailing_fields`.

        Pydantic puts a base class's fields first; the files have always read
        "who" before "hash", and a rewrite should change no line it need not.
        """
        data: dict[str, object] = handler(self)
        last = _HASH_FIELDS + type(self).trailing_fields
        own = {key: value for key, value in data.items() if key not in last}
        return own | {key: data[key] for key in last if key in data}


def hash_secret(secret: str) -> dict[str, object]:
    """The `ScryptHash` fields for `secret` with the current parameters and a fresh salt (``kdf`` is the default)."""
    salt = os.urandom(16)
    digest = _scrypt(secret, salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": std_b64e(salt), "hash": std_b64e(digest)}


_DUMMY = ScryptHash(n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=std_b64e(bytes(16)), hash=std_b64e(bytes(HASH_BYTES)))
"""Checked when the id is unknown, so that answer takes as long as a wrong secret."""


class Verifier:
    """Checks secrets against stored hashes, at most `KDF_SLOTS` scrypt runs at once."""

    def __init__(self, slots: int = KDF_SLOTS) -> None:
        """Allow `slots` concurrent scrypt runs through this verifier."""
        self._slots = threading.BoundedSemaphore(slots)

    def verify(self, stored: ScryptHash | None, secret: str) -> bool:
        """
        Whether `secret` matches `stored`; with no stored hash (an unknown id), False.

        Runs exactly one scrypt either way (a missing hash is checked against a
        dummy), so the timing does not say whether the id exists.
        """
        with self._slots:
            valid = (stored or _DUMMY).matches(secret)
        return stored is not None and valid

"""
Pseudonymous subject tokens: keyed HMAC of a person's identifying details.

Audit records, keys and logs refer to people by token, never by name, so the
audit trail holds no personal data and erasing a person never breaks it.  The
key is partnership-secret: without it a token cannot be linked back by
guessing names and birth dates.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from safebus.private_files import create_private

__all__ = ["Tokeniser"]


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Tokeniser:
    """Derives subject tokens with one partnership key."""

    key: bytes

    def person(self, *, first_name: str, surname: str, date_of_birth: date | None) -> str:
        """Return the token of a person (stable under case and spacing differences)."""
        material = "|".join(
            ["person", _normalise(first_name), _normalise(surname), date_of_birth.isoformat() if date_of_birth else ""]
        )
        return "subj_" + hmac.new(self.key, material.encode(), hashlib.sha256).hexdigest()[:32]

    @classmethod
    def load_or_create(cls, path: Path) -> Tokeniser:
        """Read the key at `path`, creating a random one (0600) the first time."""
        create_private(path, os.urandom(32))  # or, if it is there (a racing process's), narrowed to 0600
        return cls(path.read_bytes())

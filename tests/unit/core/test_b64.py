"""Byte strings in signed JSON have one spelling: the decoders accept exactly what the encoders write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safebus.b64 import b64d, b64e, std_b64d, std_b64e


@given(st.binary(max_size=200))
def test_both_alphabets_read_back_what_they_wrote(data: bytes) -> None:
    """Round trip, and the url-safe text never carries padding or characters a URL or JSON would escape."""
    assert b64d(b64e(data)) == data
    assert std_b64d(std_b64e(data), canonical=True) == data
    assert not set(b64e(data)) & set("=+/")


@pytest.mark.parametrize(("text", "why"), [
    ("YWJj!", "a character outside the alphabet (Python's own decoder drops it silently)"),
    ("YW Jj", "white space"),
    ("YQ==", "padding"),
    ("YR", "non-zero padding bits: a second spelling of b'a'"),
    ("YWJjZ", "a length no byte string has"),
    ("YW+j", "the standard alphabet's '+'"),
])
def test_base64url_refuses_every_other_spelling(text: str, why: str) -> None:
    """A signed value spelt another way would decode to the same key or signature; it is refused instead."""
    with pytest.raises(ValueError, match="base64url"):
        b64d(text)


def test_base64url_refuses_what_is_not_text() -> None:
    """A JSON number where bytes were expected is a clear ValueError, not an AttributeError."""
    with pytest.raises(ValueError, match="base64url"):
        b64d(12)  # type: ignore[arg-type]


def test_standard_base64_is_strict_and_canonical_on_request() -> None:
    """Checkpoint roots must be canonical (C2SP); every standard text must be clean base64."""
    assert std_b64d("YQ==") == b"a"
    with pytest.raises(ValueError, match="valid"):
        std_b64d("YQ==\n")
    assert std_b64d("YR==") == b"a"
    with pytest.raises(ValueError, match="canonical"):
        std_b64d("YR==", canonical=True)

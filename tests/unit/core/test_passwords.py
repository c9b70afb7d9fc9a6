"""The one scrypt module (`safebus.passwords`): records written before it existed still verify, in both formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from safebus.account_files import PasswordHash
from safebus.passwords import ScryptHash, Verifier, hash_secret
from safebus.producers.gateway import Credential, CredentialFile

# Produced by `account_files.hash_password` before `safebus.passwords` existed (synthetic password).
ACCOUNT_RECORD = {"n": 16384, "r": 8, "p": 1, "salt": "KWw4yJ//3i6Z9m2AjGZGIg==",
                  "hash": "1r1Vi1NFXGm1NX+/zDXxzsnzIC8OebQVreoTgz/YMOc=", "password_set_at": "2026-01-02T00:00:00Z"}
ACCOUNT_PASSWORD = "correct horse battery"

# Written by `gateway.add_credential` before `safebus.passwords` existed (synthetic token, never used anywhere).
CREDENTIALS_FILE = """{
  "format": "safebus-gateway-credentials/1",
  "credentials": {
    "cred-5f9bc0d9b43b9d05": {
      "agency_id": "northdale-idva",
      "kdf": "scrypt",
      "n": 16384,
      "r": 8,
      "p": 1,
      "salt": "7oXtueZ7zp7fS+ex7w3fcQ==",
      "hash": "8Xa/IstP9B640bNM0DdFm/KjlduH2H7XoHMiSAjO/Iw=",
      "created_at": "2026-01-02T00:00:00Z",
      "revoked_at": null
    }
  }
}
"""
CREDENTIAL_SECRET = "5Y5sDY577xhwNNfuTBJyBju7pNlLF2MxzKBLMmXA4_c"


def test_an_account_hash_written_before_the_move_still_verifies() -> None:
    """Key Adult and officer files in use keep working: same format, same parameters."""
    stored = PasswordHash.model_validate(ACCOUNT_RECORD)
    assert stored.matches(ACCOUNT_PASSWORD)
    assert not stored.matches(ACCOUNT_PASSWORD + "!")
    assert Verifier().verify(stored, ACCOUNT_PASSWORD)


def test_a_gateway_credential_written_before_the_move_still_verifies_and_rewrites_identically() -> None:
    """A credentials file in use still verifies, and writing it back changes no line."""
    content = CredentialFile.model_validate_json(CREDENTIALS_FILE)
    stored = content.credentials["cred-5f9bc0d9b43b9d05"]
    assert Verifier().verify(stored, CREDENTIAL_SECRET)
    assert not Verifier().verify(stored, CREDENTIAL_SECRET[:-1])
    assert content.model_dump_json(indent=2) + "\n" == CREDENTIALS_FILE


def test_an_unknown_id_is_refused_after_the_same_work() -> None:
    """No stored hash: False, after one scrypt against the dummy."""
    assert Verifier().verify(None, "anything at all") is False


def test_a_fresh_hash_uses_the_current_parameters_and_a_fresh_salt() -> None:
    """Equal secrets do not look equal; the parameters are stored with the hash."""
    first, second = ScryptHash.model_validate(hash_secret("s" * 20)), ScryptHash.model_validate(hash_secret("s" * 20))
    assert first.salt != second.salt
    assert first.hash != second.hash
    assert (first.n, first.r, first.p) == (2**14, 8, 1)
    assert first.matches("s" * 20)


def test_a_record_keeps_who_before_hash_before_when() -> None:
    """The serialised order is unchanged: the holder's fields, the hash fields, then the timestamps."""
    credential = Credential.model_validate({"agency_id": "northdale-idva", **hash_secret("x" * 20),
                                            "created_at": datetime(2026, 1, 2, tzinfo=UTC)})
    assert list(json.loads(credential.model_dump_json())) == [
        "agency_id", "kdf", "n", "r", "p", "salt", "hash", "created_at", "revoked_at"]
    account = PasswordHash.model_validate(ACCOUNT_RECORD)
    assert list(json.loads(account.model_dump_json())) == ["kdf", "n", "r", "p", "salt", "hash", "password_set_at"]

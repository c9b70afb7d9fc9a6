"""The payload validator is built once per published contract version, and its cache stays bounded."""

from __future__ import annotations

import json
import uuid

from safebus.schemas import validation
from safebus.schemas.examples import EXAMPLES
from safebus.schemas.validation import validate_payload


def _incident() -> dict[str, object]:
    payload: dict[str, object] = json.loads(EXAMPLES["police.domestic-abuse-incident"]().model_dump_json())
    payload["event_id"] = str(uuid.uuid4())
    return payload


def test_a_contract_version_is_built_once_however_many_payloads_use_it() -> None:
    """Building a validator per payload grew the gateway's memory with every request (bench/README.md)."""
    validation._validator.cache_clear()
    for _ in range(50):
        assert validate_payload(_incident()) == []
    info = validation._validator.cache_info()
    assert info.misses == 1
    assert info.hits == 49


def test_made_up_versions_cannot_grow_the_cache_and_real_payloads_still_validate() -> None:
    """A stranger cycling through versions costs entries up to the bound, never more, and is refused each time."""
    validation._validator.cache_clear()
    for n in range(validation._VALIDATORS_KEPT * 3):
        payload = _incident() | {"schema_version": f"9.{n}.0"}
        [issue] = validate_payload(payload)
        assert issue.path == "$.schema_version"
    assert validation._validator.cache_info().currsize == validation._VALIDATORS_KEPT
    assert validate_payload(_incident()) == []
    broken = _incident() | {"incident_at": "yesterday"}
    assert [issue.path for issue in validate_payload(broken)] == ["$.incident_at"]

"""Unit tests run as a plain local client, whatever broker the integration tests of the same session set up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from safebus import kafka_security
from safebus.settings_file import SETTINGS_FILE


@pytest.fixture(autouse=True)
def _no_kafka_identity_from_the_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Clear the ``SAFEBUS_KAFKA_*`` identity (and any settings file) for each unit test.

    The integration suite's session-long secured cluster exports its administrator's settings until the
    session ends, which is after the unit tests (collected later) have run; no unit test may depend on it.
    """
    for variable in (*kafka_security.VARIABLES.values(), kafka_security.CREDENTIALS_DIR, SETTINGS_FILE):
        monkeypatch.delenv(variable, raising=False)
    kafka_security.use(None)
    yield
    kafka_security.use(None)

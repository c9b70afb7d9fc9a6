"""Fixtures shared by unit and integration tests: a synthetic partnership in a temp state directory."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safebus.app.wiring import tokeniser_for
from safebus.directory import AgencyKind, Directory, PartnershipStore
from safebus.kafka_io import ReliableProducer
from safebus.keys import PrivateKeys
from safebus.producers.synthetic import IncidentFactory, create_partnership
from safebus.pseudonyms import Tokeniser
from safebus.records import Output
from tests.mail_relay import smtp as smtp  # the loopback SMTP relay fixture, for every test

FIXED_NOW = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)  # a Wednesday evening in term time


@dataclass(frozen=True, kw_only=True)
class Partnership:
    """A synthetic partnership with every private key at hand."""

    state_dir: Path
    store: PartnershipStore
    directory: Directory
    tokeniser: Tokeniser

    def keys(self, agency_id: str) -> PrivateKeys:
        """Private keys of one agency."""
        return self.store.private_keys(agency_id)

    @property
    def police(self) -> PrivateKeys:
        """The force's keys."""
        return self.keys(self.directory.of_kind(AgencyKind.POLICE)[0].id)

    @property
    def router(self) -> PrivateKeys:
        """The router's keys."""
        return self.keys(self.directory.router().id)


@pytest.fixture
def partnership(tmp_path: Path) -> Partnership:
    """A fresh synthetic partnership (new keys every test)."""
    store = PartnershipStore(tmp_path / "state")
    directory = create_partnership(store)
    return Partnership(state_dir=store.state_dir, store=store, directory=directory,
                       tokeniser=tokeniser_for(store.state_dir))


@pytest.fixture
def factory() -> IncidentFactory:
    """A seeded incident generator."""
    return IncidentFactory(random.Random(20261118), now=FIXED_NOW)


class KeepingProducer(ReliableProducer):
    """A producer that never reaches a broker: it keeps what it was asked to publish (dead letters, checkpoints)."""

    def __init__(self) -> None:
        super().__init__(bootstrap="127.0.0.1:1")
        self.sent: list[Output] = []

    def produce_all(self, outputs: list[Output], *, timeout_s: float = 0) -> None:
        self.sent.extend(outputs)

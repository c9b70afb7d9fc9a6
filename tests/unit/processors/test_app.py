"""The Faust agent's batch step: it returns only when every output is durable."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from safebus.processors import app as processor_app
from safebus.records import DLQ_REASON, Origin, Output


@dataclass
class _Message:
    topic: str = "in"
    partition: int = 0
    offset: int = 3
    key: bytes | None = b"k"


@dataclass
class _Event:
    value: bytes
    message: _Message


class _Producer:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *args: Any) -> Awaitable[None]:
        self.sent.append((topic, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail and topic == "audit":
            future.set_exception(TimeoutError("broker unavailable"))
        else:
            future.set_result(None)
        return future


class _Handler:
    def __init__(self, producer: _Producer) -> None:
        self.producer = producer
        self.commits: list[int] = []
        """How many outputs had been confirmed each time the batch's local writes were committed."""

    def handle(self, raw: bytes, origin: Origin) -> list[Output]:
        return [Output(topic="out", key=raw, value=raw), Output(topic="audit", key=raw, value=raw)]

    @contextmanager
    def batch(self) -> Iterator[None]:
        yield  # an exception (an unconfirmed output) skips the commit, as SQLite's rollback does
        self.commits.append(len(self.producer.sent))


@dataclass
class _App:
    producer: _Producer


def _run(producer: _Producer) -> _Handler:
    events = [_Event(value=f"e{i}".encode(), message=_Message(offset=i)) for i in range(3)]
    handler = _Handler(producer)
    asyncio.run(processor_app.route_batch(_App(producer), handler, events))  # type: ignore[arg-type]
    return handler


def test_batch_sends_every_output_of_every_event() -> None:
    """All outputs of a batch are sent before the batch step returns, and local writes commit once, after them."""
    producer = _Producer(fail=False)
    handler = _run(producer)
    assert len(producer.sent) == 6
    assert handler.commits == [6]


def test_a_batch_counts_its_records_per_topic_and_its_dead_letters_by_reason_once_durable() -> None:
    """``/metrics`` of ``--health-port``: records read per topic, and the dead letters written, by reason."""

    class Refusing(_Handler):
        def handle(self, raw: bytes, origin: Origin) -> list[Output]:
            if raw == b"e1":
                return [Output(topic="dlq", key=raw, value=raw, headers=((DLQ_REASON, b"bad-signature"),))]
            return super().handle(raw, origin)

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    records, dead = count("safebus_records_in_total", topic="in"), count("safebus_dead_letters_total",
                                                                         reason="bad-signature")
    producer = _Producer(fail=False)
    events = [_Event(value=f"e{i}".encode(), message=_Message(offset=i)) for i in range(3)]
    asyncio.run(processor_app.route_batch(_App(producer), Refusing(producer), events))  # type: ignore[arg-type]
    assert count("safebus_records_in_total", topic="in") == records + 3
    assert count("safebus_dead_letters_total", reason="bad-signature") == dead + 1


def test_an_unconfirmed_output_stops_the_worker_instead_of_acknowledging(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the broker does not confirm an output, the process exits so the batch is replayed, never acked."""
    exits: list[int] = []

    def fake_exit(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr("os._exit", fake_exit)
    with pytest.raises(SystemExit):
        _run(_Producer(fail=True))
    assert exits == [processor_app.EXIT_OUTPUT_NOT_DURABLE]


def test_the_router_writes_only_json_lines_when_faust_logs_warnings(tmp_path: Path) -> None:
    """Faust's terminal spinner is off: a warning from Faust's own logger puts no cursor codes in the log file."""
    import faust

    out = io.StringIO()
    app = faust.App("t-spinner", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), web_enabled=False)
    worker = processor_app._BoundedStopWorker(app, loglevel="warn", quiet=True, redirect_stdouts=False, stdout=out)
    logger = logging.getLogger("spinner-probe")
    logger.addHandler(logging.StreamHandler(out))
    worker._setup_spinner_handler(logger, logging.WARNING)  # what Faust does when it configures logging
    logger.warning('{"event": "a warning"}')
    worker._on_startup_end_spinner()
    assert "\x1b[" not in out.getvalue()
    assert out.getvalue().splitlines() == ['{"event": "a warning"}']

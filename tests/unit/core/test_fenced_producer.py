"""The single writers' fence, where no broker is needed: a writer that has not begun (or was fenced) writes nothing."""

from __future__ import annotations

import pytest

from safebus.fenced_producer import FencedProducer, WriterFenced
from safebus.records import Output


def test_a_writer_that_has_not_begun_refuses_to_write_and_does_not_begin_by_itself() -> None:
    writer = FencedProducer("127.0.0.1:1", "t-audit-sequencer")
    with pytest.raises(WriterFenced):
        writer.produce_all([Output(topic="t.audit.leaves", key=b"0", value=b"{}")])
    writer.may_begin = lambda: False  # the lease is elsewhere
    with pytest.raises(WriterFenced):
        writer.produce_all([Output(topic="t.audit.leaves", key=b"0", value=b"{}")])
    assert not writer.begun


def test_nothing_to_write_needs_no_transaction() -> None:
    FencedProducer("127.0.0.1:1", "t-audit-sequencer").produce_all([])

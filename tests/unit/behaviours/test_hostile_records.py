"""
Every worker survives every record: the hostile corpus and hypothesis, through each worker's own handler.

Each worker's handler is the one its loop runs (`bench.fuzz_harness`), with a
memory producer that refuses what our real producers refuse.  For every
hostile record the worker must not raise, must produce nothing too large to
send, and must either take the record or write exactly one dead letter for it;
a good record afterwards is still taken.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from bench.fuzz_corpus import Hostile, corpus, hostile_records, strategy
from bench.fuzz_harness import Outcome, Target, Targets, build_targets, to_record
from safebus.app.agency_admin import latest_verified, revoke_key, rotate_keys
from safebus.app.wiring import open_ledger
from safebus.directory import AgencyKind
from safebus.processors.state import SqliteRouterState
from safebus.processors.state_changelog import ChangelogRouterState, restore
from safebus.records import (
    DLQ_ID,
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGINAL_SHA256,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TRUNCATED,
    Origin,
    Record,
    dead_letter,
)
from tests.conftest import Partnership
from tests.unit.producers.gateway.test_server import Running, example, post, running

__all__ = ["running"]  # the gateway fixture, imported to be used here

TARGETS = ("router", "inbox", "queues", "sequencer-audit", "sequencer-deadletter", "sequencer-directory", "monitor")
_offsets = iter(range(1, 10**9))


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Targets:
    """Every worker on one synthetic partnership, with memory producers."""
    return build_targets(tmp_path_factory.mktemp("fuzz") / "state")


def _run(target: Target, hostiles: list[Hostile]) -> tuple[Outcome, list[Record]]:
    records = [to_record(h, topic=target.topic, offset=next(_offsets)) for h in hostiles]
    return target.run(records, kinds=[h.kind for h in hostiles]), records


def _good_is_taken(targets: Targets, name: str) -> None:
    target = targets.targets[name]
    outcome, _ = _run(target, [targets.good[name]()])
    assert (outcome.exits, outcome.unaccounted, outcome.dead_lettered, outcome.output) == (0, 0, 0, 1), (
        outcome.failures, outcome.reasons)


@pytest.mark.parametrize("name", TARGETS)
def test_the_whole_hostile_corpus_is_accounted_for_and_a_good_record_still_goes_through(
        targets: Targets, name: str) -> None:
    """No exit, no oversized output, each hostile record taken or dead-lettered exactly once; a good one is taken."""
    target = targets.targets[name]
    hostiles = target.corpus(random.Random(name))
    total = Outcome()
    for start in range(0, len(hostiles), 100):  # batches, as the loops hand them over
        outcome, _ = _run(target, hostiles[start:start + 100])
        total.add(outcome)
    assert total.exits == 0, total.failures
    assert total.unaccounted == 0, total.failures
    assert total.oversized_outputs == 0
    assert total.records == len(hostiles) > 100
    assert total.dead_lettered > 0  # the monitor: signed facts it cannot apply (the rest is the sequencer's)
    _good_is_taken(targets, name)


@pytest.mark.parametrize("name", TARGETS)
def test_a_worker_told_400_kb_of_nested_brackets_dead_letters_it(targets: Targets, name: str) -> None:
    """
    The record that stopped the router, inbox, sequencer and monitor is now one dead letter.

    Except where it is no fault: on the dead-letter topic any value is a refused
    record (its digest is logged), and the monitor leaves what is not a fact to
    the sequencer.
    """
    target = targets.targets[name]
    outcome, _ = _run(target, [Hostile(kind="deep", value=b"[" * 400_000, key=b"k",
                                       headers=dict(target.template.headers))])
    assert outcome.exits == 0, outcome.failures
    expected = (0, 1) if name in ("monitor", "sequencer-deadletter") else (1, 0)
    assert (outcome.dead_lettered, outcome.output) == expected


@pytest.mark.parametrize("size", [1_000_000, 1_048_000])
def test_the_router_dead_letters_a_record_of_about_a_megabyte_in_a_letter_that_fits(targets: Targets,
                                                                                    size: int) -> None:
    """The oversized record's dead letter is its prefix, digest and coordinates: it fits the producer."""
    target = targets.targets["router"]
    raw = random.Random(size).randbytes(size)
    outcome, _ = _run(target, [Hostile(kind="huge", value=raw, key=b"k")])
    assert (outcome.exits, outcome.dead_lettered, outcome.oversized_outputs) == (0, 1, 0)
    assert outcome.reasons == {"verify/too-large": 1}
    record = to_record(Hostile(kind="huge", value=raw, key=b"k"), topic=target.topic, offset=next(_offsets))
    [letter] = [o for o in target.handle([record]) if o.topic == target.deadletter]
    headers = dict(letter.headers)
    assert letter.value == raw[:4096]
    assert headers[DLQ_TRUNCATED] == b"true"
    assert headers[DLQ_ORIGINAL_SHA256] == hashlib.sha256(raw).hexdigest().encode()
    assert headers[DLQ_ORIGIN_OFFSET] == str(record.offset).encode()


def test_a_dead_letter_whose_partition_header_is_not_a_number_is_refused_by_the_sequencer(
        targets: Targets) -> None:
    """'abc' as the origin partition is one dead letter (not-an-audit-fact), not a stopped sequencer."""
    target = targets.targets["sequencer-deadletter"]
    outcome, _ = _run(target, [Hostile(kind="abc", value=target.template.value, key=b"k",
                                       headers={**target.template.headers, DLQ_ORIGIN_PARTITION: b"abc"})])
    assert (outcome.exits, outcome.dead_lettered) == (0, 1)
    assert outcome.reasons == {"audit-sequence/not-an-audit-fact": 1}


def test_dead_letters_have_the_same_id_on_replay_and_the_log_counts_them_once(targets: Targets) -> None:
    """A dead letter rebuilt after a crash has the same id; the sequencer appends its fact once."""
    origin = Origin(topic="fz.ingress.p.da-incident", partition=2, offset=41)
    first = dead_letter(raw=b"junk", origin=origin, stage="verify", reason="malformed", detail="", topic="d")
    again = dead_letter(raw=b"junk", origin=origin, stage="verify", reason="malformed", detail="", topic="d")
    other = dead_letter(raw=b"junk", origin=origin, stage="validate", reason="malformed", detail="", topic="d")
    assert dict(first.headers)[DLQ_ID] == dict(again.headers)[DLQ_ID] != dict(other.headers)[DLQ_ID]
    sequencer = targets.targets["sequencer-deadletter"]
    letter = Hostile(kind="letter", value=first.value, key=first.key, headers=dict(first.headers))
    one, _ = _run(sequencer, [letter])
    two, _ = _run(sequencer, [letter])
    assert (one.output, two.output, one.dead_lettered + two.dead_lettered) == (1, 1, 0)
    ledger = open_ledger(targets.settings)
    try:
        assert ledger.index_of(dict(first.headers)[DLQ_ID].decode()) is not None
        facts = [leaf for leaf in ledger.leaves() if leaf.fact_id == dict(first.headers)[DLQ_ID].decode()]
        assert len(facts) == 1
    finally:
        ledger.close()


def test_a_dead_letter_of_an_oversized_record_is_logged_with_the_whole_records_digest(targets: Targets) -> None:
    """The audit fact of a truncated dead letter names the SHA-256 of the refused record, not of the prefix."""
    raw = b"z" * 700_000
    letter = dead_letter(raw=raw, origin=Origin(topic="fz.x", partition=0, offset=123456), stage="verify",
                         reason="too-large", detail="", topic="d")
    sequencer = targets.targets["sequencer-deadletter"]
    outcome, _ = _run(sequencer, [Hostile(kind="big", value=letter.value, key=letter.key,
                                          headers=dict(letter.headers))])
    assert outcome.output == 1
    ledger = open_ledger(targets.settings)
    try:
        index = ledger.index_of(dict(letter.headers)[DLQ_ID].decode())
        assert index is not None
        assert hashlib.sha256(raw).hexdigest().encode() in ledger.leaf(index).body
    finally:
        ledger.close()


@pytest.mark.parametrize("name", TARGETS)
def test_hypothesis_finds_no_record_that_escapes_a_worker(targets: Targets, name: str) -> None:
    """Generated values and headers, batch by batch: no exit, no oversized output, nothing unaccounted."""
    target = targets.targets[name]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(batch=strategy(target.template.value, target.template.headers, numeric=target.numeric).flatmap(
        lambda first: strategy(target.template.value, target.template.headers, numeric=target.numeric).map(
            lambda second: [first, second])))
    def check(batch: list[Hostile]) -> None:
        outcome, _ = _run(target, batch)
        assert outcome.exits == 0, outcome.failures
        assert outcome.unaccounted == 0, outcome.failures
        assert outcome.oversized_outputs == 0

    check()


def test_dead_letters_name_stage_and_reason(targets: Targets) -> None:
    """Every dead letter of the corpus carries a stage and a reason code."""
    target = targets.targets["inbox"]
    records = [to_record(Hostile(kind="x", value=value, key=None), topic=target.topic, offset=next(_offsets))
               for value in (b"", b"\xff", b"[" * 1000, b"{}")]
    produced = target.handle(records)
    letters = [dict(o.headers) for o in produced if o.topic == target.deadletter]
    assert len(letters) == 4
    assert all(h[DLQ_STAGE] == b"deliver" and h[DLQ_REASON] for h in letters)


def test_the_gateway_answers_every_hostile_body_with_a_4xx_and_keeps_serving(running: Running) -> None:
    """Deep nesting, huge and tiny bodies, invalid UTF-8, wrong types: a clear 4xx each (or 202 if valid), no 500."""
    template = json.dumps(example("police.domestic-abuse-incident")).encode()
    statuses: Counter[int] = Counter()
    for kind, body in corpus(template, rng=random.Random(7)):
        answer = post(running, None, raw=body)
        assert answer.status == 202 or 400 <= answer.status < 500, (kind, answer.status, answer.body)
        statuses[answer.status] += 1
    assert statuses[413]
    assert statuses[400]
    assert statuses[422]
    good = example("police.domestic-abuse-incident")
    assert post(running, good).status == 202


def test_the_routers_start_up_survives_a_hostile_changelog(tmp_path: Path) -> None:
    """Hostile records on the router-state changelog are skipped at restore; the real changes around them apply."""
    old = ChangelogRouterState(tmp_path / "old.sqlite", topic="t.router.state")
    child = "subj_" + "c" * 32
    old.set_enrolment(child, "900101", datetime(2026, 11, 1, tzinfo=UTC))
    [change] = old.drain()
    hostiles = list(hostile_records(change.value, {}, rng=random.Random(3)))
    records = [Record(topic=change.topic, partition=0, offset=n, key=change.key, value=h.value)
               for n, h in enumerate([*hostiles, Hostile(kind="good", value=change.value)])]
    fresh = SqliteRouterState(tmp_path / "new.sqlite")
    assert restore(fresh, records) >= 1
    assert fresh.enrolment(child) == "900101"


def test_a_hostile_directory_record_neither_hides_an_agency_nor_undoes_a_revocation(partnership: Partnership) -> None:
    """After the genuine entries: junk, a forged entry, and the pre-revocation entry replayed; sync keeps the newest."""
    store = partnership.store
    police = partnership.directory.of_kind(AgencyKind.POLICE)[0].id
    before = next(e for e in store.signed_entries() if e.entry.id == police)
    old_key = partnership.keys(police).public().signing_key_id
    later = before.entry.issued_at + timedelta(minutes=1)
    rotate_keys(store, police, now=later)
    revoked = revoke_key(store, police, old_key, now=later + timedelta(minutes=1))
    forged = json.loads(revoked.model_dump_json())
    forged["entry"]["name"] = "A forged police force"
    values = [*(e.model_dump_json().encode() for e in store.signed_entries()), b"[" * 400_000, b"\xff",
              json.dumps(forged).encode(), before.model_dump_json().encode()]
    records = [Record(topic="t.reference.agencies", partition=0, offset=n, key=None, value=v)
               for n, v in enumerate(values)]
    kept, refused = latest_verified(records, store.trust_anchor(), now=later + timedelta(minutes=2))
    assert refused == []
    [entry] = [e for e in kept if e.entry.id == police]
    assert entry == revoked
    assert {a.id for a in partnership.directory.agencies} == {e.entry.id for e in kept}

"""
Merkle audit-log benchmark: what an RFC 9162 log of a million audit facts costs in time, bytes and memory.

The audit log appends one leaf per fact (a sharing decision, a denial, a
dead-letter, a config change): the fact's RFC 8785 canonical JSON, hashed as an
RFC 9162 leaf.  It signs checkpoints and hands out inclusion and consistency
proofs.  This run measures, at 1,000,000 leaves (``--leaves``):

- **append rate**: ``leaf_hash`` + ``MerkleTree.append`` per leaf over the whole
  log, and separately ``canonical_json`` + ``leaf_hash`` per realistic audit fact
  (~600 bytes, shaped like a ``SharingDecision`` with its Kafka coordinates);
- **inclusion proofs** for random leaves in the full tree: size in hashes and
  bytes, generation and verification time per proof; also at a random earlier
  size (an old checkpoint);
- **consistency proofs** between random pairs of sizes: size, generation and
  verification time;
- **full-log re-verification**: hash every stored leaf again and rebuild the
  tree from the leaf hashes, and check the root (what an auditor does with a
  complete copy of the log), plus a rebuild from stored leaf hashes alone
  (what the log does at start-up);
- **memory**: the bytes of hashes the tree holds, the process's RSS growth
  while building it, and the peak RSS (``VmHWM``).

Leaf data cycles through a pool of distinct facts: 1M distinct 600-byte facts
would add 600 MB of test data that the log itself never holds in memory, and
SHA-256 costs the same for any 600 bytes.  Proof operations are timed one
call at a time with ``perf_counter_ns``, with the garbage collector paused;
bulk operations (appends, rebuilds) are timed whole.  Every generated proof is
verified, and the rebuilt roots must equal the appended tree's root, so the
run fails rather than report numbers for wrong answers.

Usage::

    python bench/merkle.py [--leaves N] [--proofs P] [--facts F] [--seed S]

The last line printed is a JSON object with every number; it is also written
to ``bench/results/merkle.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import platform
import random
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from safebus.jcs import canonical_json
from safebus.merkle import (
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    mth,
    verify_consistency,
    verify_inclusion,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "merkle.json"
DEFAULT_SEED = 20261118
POOL_SIZE = 4096
"""Distinct audit facts the leaf data cycles through (see the module docstring)."""
FIXED_NOW = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
T = TypeVar("T")


def say(line: str = "") -> None:
    """Print progress immediately (output may be piped)."""
    print(line, flush=True)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Command-line choices for one run."""

    leaves: int
    proofs: int
    facts: int
    seed: int


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    """Parse the command line; the defaults are the ones results are compared at."""
    parser = argparse.ArgumentParser(description="Cost of the RFC 9162 Merkle audit log at a million leaves.")
    parser.add_argument("--leaves", type=int, default=1_000_000, help="log size (default 1,000,000)")
    parser.add_argument("--proofs", type=int, default=10_000,
                        help="random proofs of each kind generated and verified (default 10,000)")
    parser.add_argument("--facts", type=int, default=100_000,
                        help="audit facts canonicalised and hashed for the per-fact cost (default 100,000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.leaves < 2 or args.proofs < 1 or args.facts < 1:
        parser.error("--leaves must be at least 2, --proofs and --facts at least 1")
    return BenchConfig(leaves=args.leaves, proofs=args.proofs, facts=args.facts, seed=args.seed)


# --------------------------------------------------------------------------- audit facts


def audit_fact(rng: random.Random, sequence: int) -> dict[str, object]:
    """
    One realistic audit fact: a sharing decision as the audit topic carries it, plus its Kafka coordinates.

    Same field names as ``SharingDecision.model_dump(mode="json")``, pseudonymous
    subject tokens only (no personal data, as in the real log), plus the Kafka
    partition and offset: about 780 bytes as canonical JSON.
    """
    def token() -> str:
        return "subj_" + rng.randbytes(16).hex()

    decided = FIXED_NOW + timedelta(seconds=sequence)
    outcome = rng.choice(["shared", "withheld", "deferred"])
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": "audit.sharing-decision",
        "schema_version": "1.2.0",
        "producer": "router",
        "occurred_at": decided.isoformat(),
        "recorded_at": (decided + timedelta(milliseconds=rng.randrange(5, 400))).isoformat(),
        "subjects": [token()],
        "about_event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "about_event_type": "police.domestic-abuse-incident",
        "about_producer": rng.choice(["force-a", "force-b"]),
        "outcome": outcome,
        "purpose": "safeguarding-children",
        "recipient": f"school-{rng.randrange(100, 999)}",
        "recipient_kind": "school",
        "reason": "child normally resident at the address",
        "agreement_id": "encompass",
        "agreement_version": "2.1.0",
        "clause": "4.2",
        "lawful_basis": ["UK GDPR 6(1)(e)"],
        "consent_status": "not-required",
        "fields_released": ["incident_date", "child_token", "school_urn"] if outcome == "shared" else [],
        "output_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if outcome == "shared" else None,
        "kafka_partition": rng.randrange(3),
        "kafka_offset": sequence,
    }


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Per-call timings of one operation, in µs."""

    mean_us: float
    median_us: float
    p99_us: float
    n: int

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        """Summarise per-call nanosecond samples."""
        ordered = sorted(samples_ns)
        return cls(mean_us=round(statistics.fmean(ordered) / 1000, 2),
                   median_us=round(statistics.median(ordered) / 1000, 2),
                   p99_us=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000, 2),
                   n=len(ordered))


def timed_calls(calls: Sequence[Callable[[], T]]) -> tuple[list[T], Stats]:
    """Run each call once, timing it on its own with the GC paused; return the results and their stats."""
    results: list[T] = []
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for call in calls:
            start = clock()
            result = call()
            samples.append(clock() - start)
            results.append(result)
    finally:
        gc.enable()
    return results, Stats.of(samples)


def proc_status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB, or None where /proc has no answer."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024.0, 1)  # the kernel reports kB
    return None


def cpu_jiffies() -> list[int] | None:
    """The aggregate CPU line of /proc/stat (Linux only; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return [int(value) for value in fields[1:]] if fields and fields[0] == "cpu" else None


def host_load(before: list[int] | None, after: list[int] | None) -> dict[str, float | None]:
    """How busy the whole machine was during the run (1 / cpu_count is this process alone), and steal."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return {"cpu_busy_share": None, "cpu_steal_share": None}
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    idle = delta[3] + delta[4]
    return {"cpu_busy_share": round(1 - idle / total, 3), "cpu_steal_share": round(delta[7] / total, 3)}


def environment() -> dict[str, object]:
    """What the numbers depend on besides the code: interpreter, hash library, machine."""
    return {
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,  # hashlib's SHA-256 comes from the same library
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def check_against_rfc(pool: Sequence[bytes]) -> None:
    """Before timing anything: a small tree's roots must match the RFC's recursive MTH."""
    hashes = [leaf_hash(data) for data in pool[:257]]
    tree = MerkleTree.from_leaf_hashes(hashes)
    for size in range(len(hashes) + 1):
        if tree.root(size) != mth(hashes[:size]):
            raise RuntimeError(f"MerkleTree root at size {size} differs from RFC 9162 MTH")


def leaf_data(pool: Sequence[bytes], count: int) -> Iterator[bytes]:
    """`count` leaves' data, cycling through the pool."""
    size = len(pool)
    for index in range(count):
        yield pool[index % size]


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True, kw_only=True)
class Bulk:
    """One bulk operation timed whole: wall-clock and this process's CPU seconds, and the rates they give."""

    items: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        """Items per wall-clock second (what a user waits for; includes time lost to other processes)."""
        return self.items / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        """Items per CPU second of this process (steadier on a busy machine)."""
        return self.items / self.cpu_s if self.cpu_s else float("nan")

    def as_json(self) -> dict[str, object]:
        """Times rounded, rates whole, µs per item from both clocks."""
        return {"items": self.items, "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "per_s": round(self.per_s), "per_cpu_s": round(self.per_cpu_s),
                "us_per_item": round(self.wall_s / self.items * 1e6, 3),
                "cpu_us_per_item": round(self.cpu_s / self.items * 1e6, 3)}


def timed_bulk(items: int, work: Callable[[], object]) -> Bulk:
    """Run `work` once with the GC paused, timing it with both clocks."""
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        return Bulk(items=items, wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
    finally:
        gc.enable()


def measure_facts(config: BenchConfig, rng: random.Random) -> tuple[Bulk, list[int]]:
    """canonical_json + leaf_hash per audit fact; returns the timing and the facts' sizes in bytes."""
    facts = [audit_fact(rng, sequence) for sequence in range(min(config.facts, POOL_SIZE))]
    sizes = sorted(len(canonical_json(fact)) for fact in facts)

    def work() -> None:
        for sequence in range(config.facts):
            fact = facts[sequence % len(facts)]
            fact["kafka_offset"] = sequence  # every fact hashed is a different one
            leaf_hash(canonical_json(fact))

    return timed_bulk(config.facts, work), sizes


def measure_appends(config: BenchConfig, pool: Sequence[bytes]) -> tuple[MerkleTree, Bulk, Bulk, float | None]:
    """
    leaf_hash + append for the whole log, then the appends alone (leaf hashes precomputed).

    Returns the tree, both timings and how much the process's RSS grew while
    the first tree was built (the pool already exists, so that is the tree).
    """
    rss_before = proc_status_mib("VmRSS")
    tree = MerkleTree()

    def hash_and_append() -> None:
        append = tree.append
        for data in leaf_data(pool, config.leaves):
            append(leaf_hash(data))

    with_hashing = timed_bulk(config.leaves, hash_and_append)
    rss_after = proc_status_mib("VmRSS")
    growth = round(rss_after - rss_before, 1) if rss_before is not None and rss_after is not None else None
    hashes = [leaf_hash(data) for data in pool]
    bare = MerkleTree()

    def append_only() -> None:
        append = bare.append
        for index in range(config.leaves):
            append(hashes[index % len(hashes)])

    appends = timed_bulk(config.leaves, append_only)
    return tree, with_hashing, appends, growth


@dataclass(frozen=True, kw_only=True)
class ProofResult:
    """Sizes and per-call timings of one kind of proof."""

    label: str
    tree_size: int | None
    """The tree the inclusion proofs are for (None for consistency proofs, which span two)."""
    hashes_min: int
    hashes_mean: float
    hashes_max: int
    generate: Stats
    verify: Stats

    @classmethod
    def of(cls, label: str, proofs: Sequence[Sequence[bytes]], generate: Stats, verify: Stats, *,
           tree_size: int | None = None) -> ProofResult:
        """Summarise generated proofs and their timings."""
        hashes = [len(proof) for proof in proofs]
        return cls(label=label, tree_size=tree_size, hashes_min=min(hashes),
                   hashes_mean=round(statistics.fmean(hashes), 2), hashes_max=max(hashes),
                   generate=generate, verify=verify)

    def as_json(self) -> dict[str, object]:
        """The JSON form, with the sizes in bytes too."""
        return {**dataclasses.asdict(self), "bytes_mean": round(self.hashes_mean * HASH_SIZE, 1),
                "bytes_max": self.hashes_max * HASH_SIZE}


def measure_inclusion(tree: MerkleTree, config: BenchConfig, rng: random.Random, *, size: int) -> ProofResult:
    """Generate and verify inclusion proofs for random leaves of the tree of `size` leaves."""
    root = tree.root(size)
    indices = [rng.randrange(size) for _ in range(config.proofs)]
    proofs, generate = timed_calls([functools.partial(tree.inclusion_proof, i, size) for i in indices])
    leaves = [tree.leaf_hash_at(i) for i in indices]
    _, verify = timed_calls([functools.partial(verify_inclusion, h, i, size, p, root)
                             for i, p, h in zip(indices, proofs, leaves, strict=True)])
    label = "inclusion, full tree" if size == tree.size else f"inclusion, old size {size:,}"
    return ProofResult.of(label, proofs, generate, verify, tree_size=size)


def measure_consistency(tree: MerkleTree, config: BenchConfig, rng: random.Random) -> tuple[ProofResult, Stats]:
    """
    Consistency proofs between random pairs of sizes 1 ≤ old < new ≤ the tree's size.

    Also returns the time of `MerkleTree.root` at those random sizes.
    """
    pairs = []
    for _ in range(config.proofs):
        old, new = sorted(rng.sample(range(1, tree.size + 1), 2))
        pairs.append((old, new))
    roots = {size: tree.root(size) for pair in pairs for size in pair}
    proofs, generate = timed_calls([functools.partial(tree.consistency_proof, o, n) for o, n in pairs])
    _, verify = timed_calls([functools.partial(verify_consistency, o, n, roots[o], roots[n], p)
                             for (o, n), p in zip(pairs, proofs, strict=True)])
    _, root_at = timed_calls([functools.partial(tree.root, n) for _, n in pairs])
    return ProofResult.of("consistency, random sizes", proofs, generate, verify), root_at


def measure_reverification(tree: MerkleTree, config: BenchConfig, pool: Sequence[bytes]) -> tuple[Bulk, Bulk]:
    """
    Rehash every leaf's data and rebuild (an auditor), then rebuild from stored leaf hashes (start-up).

    Both rebuilt roots must equal the appended tree's root.
    """
    expected = tree.root()
    rebuilt: list[MerkleTree] = []
    from_data = timed_bulk(config.leaves, lambda: rebuilt.append(
        MerkleTree.from_leaf_hashes(leaf_hash(data) for data in leaf_data(pool, config.leaves))))
    if rebuilt.pop().root() != expected:
        raise RuntimeError("re-verification from leaf data gave a different root")
    # The stored leaf hashes read back as one blob, as from the log's leaf-hash file.
    stored = bytearray()
    for index in range(tree.size):
        stored += tree.leaf_hash_at(index)
    from_hashes = timed_bulk(config.leaves, lambda: rebuilt.append(
        MerkleTree.from_leaf_hashes(stored[i:i + HASH_SIZE] for i in range(0, len(stored), HASH_SIZE))))
    if rebuilt.pop().root() != expected:
        raise RuntimeError("rebuild from stored leaf hashes gave a different root")
    return from_data, from_hashes


# --------------------------------------------------------------------------- main


def run(config: BenchConfig) -> int:
    """Build, measure, report; return the exit status."""
    started, jiffies = time.monotonic(), cpu_jiffies()
    env = environment()
    rng = random.Random(config.seed)
    say(f"safebus Merkle log benchmark: {config.leaves:,} leaves, {config.proofs:,} proofs of each kind, "
        f"{config.facts:,} facts, seed {config.seed}")
    say(f"· Python {env['python']}, {env['openssl']}, {env['cpu_count']} CPUs, load {env['loadavg_1m_at_start']}")
    pool = [canonical_json(audit_fact(rng, sequence)) for sequence in range(POOL_SIZE)]
    check_against_rfc(pool)
    peaks: dict[str, float | None] = {"start": proc_status_mib("VmHWM")}
    say(f"· MerkleTree roots checked against RFC 9162 MTH up to 257 leaves; leaf data cycles {POOL_SIZE} facts")

    facts, fact_sizes = measure_facts(config, rng)
    say(f"audit fact ({statistics.median(fact_sizes):.0f} B median canonical JSON): canonical_json + leaf_hash "
        f"{facts.wall_s / facts.items * 1e6:.1f} µs ({facts.cpu_s / facts.items * 1e6:.1f} µs CPU), "
        f"{facts.per_s:,.0f}/s ({facts.per_cpu_s:,.0f} per CPU-second)")

    tree, with_hashing, appends, rss_growth = measure_appends(config, pool)
    say(f"append {config.leaves:,} leaves: leaf_hash + append {with_hashing.per_s:,.0f}/s "
        f"({with_hashing.per_cpu_s:,.0f} per CPU-second, {with_hashing.wall_s:.2f} s); "
        f"append alone {appends.per_s:,.0f}/s ({appends.per_cpu_s:,.0f} per CPU-second)")
    peaks["facts_and_appends"] = proc_status_mib("VmHWM")
    say(f"tree holds {tree.nbytes:,} B of hashes ({tree.nbytes / tree.size:.1f} B/leaf); "
        f"RSS grew {rss_growth} MiB while building it")

    inclusion = measure_inclusion(tree, config, rng, size=tree.size)
    inclusion_old = measure_inclusion(tree, config, rng, size=rng.randrange(tree.size // 2, tree.size))
    consistency, root_at = measure_consistency(tree, config, rng)
    for result in (inclusion, inclusion_old, consistency):
        say(f"{result.label}: {result.hashes_mean} hashes mean, {result.hashes_max} max "
            f"({result.hashes_max * HASH_SIZE} B); generate {result.generate.median_us} µs median "
            f"(mean {result.generate.mean_us}, p99 {result.generate.p99_us}), verify {result.verify.median_us} µs "
            f"median (mean {result.verify.mean_us}, p99 {result.verify.p99_us})")
    peaks["proofs"] = proc_status_mib("VmHWM")
    say(f"root at a random earlier size: {root_at.median_us} µs median (mean {root_at.mean_us}, p99 {root_at.p99_us})")

    from_data, from_hashes = measure_reverification(tree, config, pool)
    say(f"full-log re-verification (rehash {config.leaves:,} leaves + rebuild): {from_data.wall_s:.2f} s "
        f"({from_data.cpu_s:.2f} s CPU); rebuild from stored leaf hashes: {from_hashes.wall_s:.2f} s "
        f"({from_hashes.cpu_s:.2f} s CPU)")

    peaks["reverification"] = proc_status_mib("VmHWM")
    elapsed, load = time.monotonic() - started, host_load(jiffies, cpu_jiffies())
    peak = peaks["reverification"]
    say(f"peak RSS {peak} MiB; the peak so far after each phase: "
        + ", ".join(f"{phase} {value}" for phase, value in peaks.items()) + f" MiB; run took {elapsed:.1f} s")
    say(f"machine during the run: CPU busy {load['cpu_busy_share']} of all cores (this process alone is about "
        f"{1 / (os.cpu_count() or 1):.2f}), steal {load['cpu_steal_share']}")
    summary: dict[str, object] = {
        "benchmark": "merkle",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "leaves": config.leaves,
        "proofs": config.proofs,
        "seed": config.seed,
        "pool_size": POOL_SIZE,
        "gc_paused_while_timing": True,
        "seconds": round(elapsed, 1),
        "peak_rss_mib": peak,
        "peak_rss_mib_after_phase": peaks,
        **load,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        **env,
        "audit_fact": {**facts.as_json(), "bytes_min": fact_sizes[0], "bytes_median": statistics.median(fact_sizes),
                       "bytes_max": fact_sizes[-1], "what": "canonical_json + leaf_hash"},
        "append": {"leaf_hash_plus_append": with_hashing.as_json(), "append_only": appends.as_json(),
                   "tree_hash_bytes": tree.nbytes, "rss_growth_building_tree_mib": rss_growth},
        "inclusion": inclusion.as_json(),
        "inclusion_old_size": inclusion_old.as_json(),
        "consistency": consistency.as_json(),
        "root_at_random_size": dataclasses.asdict(root_at),
        "reverification": {"from_leaf_data": from_data.as_json(), "from_leaf_hashes": from_hashes.as_json()},
        "root": tree.root().hex(),  # the same seed and size give the same root on any machine
    }
    line = json.dumps(summary, sort_keys=True, ensure_ascii=False)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(line + "\n")
    print(line, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

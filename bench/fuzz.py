"""
At least 100,000 hostile records through every worker's record handler, in process: speed and memory.

Usage::

    .venv/bin/python bench/fuzz.py [--records N] [--seed S] [--batch B]   # N = 100,000; about a minute, no broker

The handlers are the ones the workers run (`bench.fuzz_harness`): the
router's `IncidentHandler.handle`, the inbox and queue workers' ``deliver``,
the audit sequencer's ``sequence`` (its three topics) and the Encompass
monitor's ``observe``, with a memory producer that refuses what our real
producers refuse.  The run:

1. **Warm-up.** The whole fixed corpus (`bench.fuzz_corpus.hostile_records`)
   through every handler once, then 1,000 random hostile records each.  The
   RSS after it is the reference.
2. **Transient.** One batch of the largest records there can be (just under
   the broker's limit), through every handler: the largest batch of the run,
   whose bytes (about 8 MiB, measured here) are what a worker may hold at once.
3. **Timed.** N random hostile records (`random_hostile`: mutations of each
   input's valid template, 0.5 % of them about a megabyte, 5 % nested far past
   the limit, a third with a mangled header), in batches of B, spread over the
   seven inputs.

It reports records/s for the timed phase (per input too), and the memory
ratio *RSS at the end / RSS after warm-up* against the bound *(RSS after
warm-up + 2 x the transient) / RSS after warm-up*: memory may hold the largest
batch twice over (the records and their dead letters), and anything kept per
record beyond that (a leak of 200 bytes a record is 20 MB here) crosses it.
It fails (exit 1) on any exception out of a handler, any record neither
dead-lettered once nor taken, any output larger than our producer takes, or
memory past the bound.  The last line is a JSON object with every
number, also written to ``bench/results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import random
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(_ROOT))

from bench.fuzz_corpus import HUGE_MAX_BYTES, Hostile, random_hostile  # noqa: E402
from bench.fuzz_harness import Outcome, Target, build_targets, to_record  # noqa: E402
from safebus.logs import configure  # noqa: E402


def rss_bytes() -> int:
    """This process's resident set size now (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _feed(target: Target, hostiles: list[Hostile], offsets: count[int], batch: int) -> Outcome:
    total = Outcome()
    for start in range(0, len(hostiles), batch):
        chunk = hostiles[start:start + batch]
        records = [to_record(h, topic=target.topic, offset=next(offsets)) for h in chunk]
        total.add(target.run(records, kinds=[h.kind for h in chunk]))
    return total


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, default=_ROOT / "bench" / "results" / "fuzz.json")
    args = parser.parse_args(argv)
    configure(level="CRITICAL", stream=io.StringIO())  # a dead letter logs a warning: 100,000 lines are not the point
    rng = random.Random(args.seed)
    offsets = count(1)
    with tempfile.TemporaryDirectory(prefix="safebus-fuzz-") as tmp:
        built = build_targets(Path(tmp) / "state", seed=args.seed)
        targets = list(built.targets.values())
        rss_start = rss_bytes()

        # (1) Warm-up: the fixed corpus, then 1,000 random records per input.
        warm = Outcome()
        for target in targets:
            fixed = target.corpus(rng)
            warm.add(_feed(target, fixed, offsets, args.batch))
            randoms = [random_hostile(rng, target.template.value, target.template.headers, numeric=target.numeric)
                       for _ in range(1000)]
            warm.add(_feed(target, randoms, offsets, args.batch))
        gc.collect()
        rss_warm = rss_bytes()

        # (2) The transient: a batch of the largest records, through every handler.
        largest = [Hostile(kind="huge-max", value=rng.randbytes(HUGE_MAX_BYTES), key=b"k") for _ in range(8)]
        for target in targets:
            warm.add(_feed(target, largest, offsets, args.batch))
        transient = sum(len(h.value) for h in largest)
        del largest
        gc.collect()
        rss_after_transient = rss_bytes()

        # (3) Timed: N random hostile records over the seven inputs.
        timed = Outcome()
        per_target: dict[str, Outcome] = {t.name: Outcome() for t in targets}
        share = -(-args.records // len(targets))  # every input gets as many, at least N in all
        rates: dict[str, float] = {}
        started = time.perf_counter()
        cpu_started = time.process_time()
        for target in targets:
            target_started = time.perf_counter()
            for start in range(0, share, args.batch):
                n = min(args.batch, share - start)
                hostiles = [random_hostile(rng, target.template.value, target.template.headers,
                                           numeric=target.numeric, huge_share=0.005) for _ in range(n)]
                outcome = _feed(target, hostiles, offsets, args.batch)
                per_target[target.name].add(outcome)
                timed.add(outcome)
            rates[target.name] = round(share / (time.perf_counter() - target_started), 1)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        gc.collect()
        rss_end = rss_bytes()

    bound = (rss_warm + 2 * transient) / rss_warm
    ratio = rss_end / rss_warm
    result = {
        "records_timed": timed.records,
        "records_total": timed.records + warm.records,
        "records_per_s": round(timed.records / elapsed, 1),
        "records_per_cpu_s": round(timed.records / cpu, 1) if cpu else None,
        "elapsed_s": round(elapsed, 2),
        "rss_start_mib": round(rss_start / 2**20, 1),
        "rss_after_warmup_mib": round(rss_warm / 2**20, 1),
        "transient_mib": round(transient / 2**20, 1),
        "rss_after_transient_mib": round(rss_after_transient / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_ratio_end_to_warmup": round(ratio, 3),
        "rss_ratio_bound": round(bound, 3),
        "warmup": warm.as_dict(),
        "timed": {name: {**outcome.as_dict(), "records_per_s": rates[name]} for name, outcome in per_target.items()},
        "exits": warm.exits + timed.exits,
        "unaccounted": warm.unaccounted + timed.unaccounted,
        "oversized_outputs": warm.oversized_outputs + timed.oversized_outputs,
    }
    ok = result["exits"] == 0 and result["unaccounted"] == 0 and result["oversized_outputs"] == 0 and ratio <= bound
    print(f"{timed.records:,} hostile records in {elapsed:.1f} s: {timed.records / elapsed:,.0f} records/s "
          f"({warm.records:,} more in warm-up)")
    for name, outcome in per_target.items():
        print(f"  {name:22} {outcome.records:7,} records  {outcome.dead_lettered:7,} dead-lettered  "
              f"{outcome.output:6,} taken  exits {outcome.exits}  unaccounted {outcome.unaccounted}  "
              f"{rates[name]:8,.0f}/s")
    print(f"RSS: {result['rss_after_warmup_mib']} MiB after warm-up, {result['rss_end_mib']} MiB at the end: "
          f"ratio {ratio:.3f} (bound {bound:.3f}, from the largest batch: {result['transient_mib']} MiB)")
    for failure in (warm.failures + timed.failures)[:10]:
        print(f"  FAILURE: {failure}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

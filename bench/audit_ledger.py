"""
The audit ledger end to end at a million leaves: append, export, verify, prove.

`bench/merkle.py` measures the tree alone.  This measures what the sequencer
and an auditor actually do with the product's ledger (`AuditLedger`):

- **append rate**: real `SharingDecision` facts, canonicalised (RFC 8785),
  hashed, given their Ed25519 receipt and stored in SQLite in batches of 1,000
  (one transaction per batch, as the sequencer does per Kafka batch), with a
  signed checkpoint every 1,000 leaves;
- **export and verify**: `export_lines` then `verify_export` over the whole
  log — every receipt checked, every leaf re-hashed, the tree rebuilt, every
  checkpoint's signature, root and consistency checked — which is what
  `safebus audit verify` does;
- **proofs**: inclusion-bundle size (JSON bytes, hashes) and the time to check
  one with the key alone (`check_inclusion`);
- **start-up**: reopening the ledger (rebuilding the tree from stored hashes);
- **disk**: the ledger's size per leaf.

Usage::

    python bench/audit_ledger.py [--leaves N] [--out PATH]

The last line printed is a JSON object with every number; it is also written
to ``bench/results/audit_ledger.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safebus.consumers.audit.facts import leaf_bytes
from safebus.consumers.audit.ledger import AuditLedger, LogKey, NewFact
from safebus.consumers.audit.verify import check_inclusion, export_lines, inclusion_bundle, verify_export
from safebus.schemas._base import event_metadata
from safebus.schemas.decision import ConsentStatus, Outcome, SharingDecision

NOW = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
ORIGIN = "audit.safebus.invalid/bench"
BATCH = 1000


def _fact(n: int) -> NewFact:
    fact = SharingDecision(
        **event_metadata(SharingDecision, producer="safebus-router", occurred_at=NOW, recorded_at=NOW,
                         event_id=f"00000000-0000-4000-8000-{n:012d}", subjects=(f"subj_{n:032x}",)),
        about_event_id=f"00000000-0000-4000-9000-{n // 5:012d}", about_event_type="police.domestic-abuse-incident",
        about_producer="northdale-police", outcome=Outcome.SHARED if n % 3 else Outcome.WITHHELD,
        purpose="operation-encompass", recipient="school-900101", recipient_kind="school",
        reason="Every child under 18 linked to a police-attended domestic-abuse incident is notified to the setting.",
        agreement_id="operation-encompass", agreement_version="2.1.0", clause="4.1 notify-setting",
        lawful_basis=("UK GDPR Art 6(1)(e)", "DPA 2018 s.8", "Domestic Abuse Act 2021 s.49A"),
        consent_status=ConsentStatus.NOT_REQUIRED,
        fields_released=("child_first_name", "child_surname", "child_date_of_birth", "police_reference",
                         "incident_at", "child_present"),
        output_id=f"00000000-0000-5000-8000-{n:012d}",
    )
    return NewFact(fact_id=fact.event_id, fact_type=fact.event_type, body=leaf_bytes(fact))


def _rss_peak_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(leaves: int, directory: Path) -> dict[str, Any]:
    """Build a ledger of `leaves` facts in `directory` and measure it."""
    key = LogKey.load_or_create(directory / "key.pem", origin=ORIGIN)
    ledger = AuditLedger(directory / "ledger.sqlite", key, checkpoint_every=BATCH)
    started = time.perf_counter()
    building = 0.0
    for start in range(0, leaves, BATCH):
        t0 = time.perf_counter()
        facts = [_fact(n) for n in range(start, min(start + BATCH, leaves))]
        building += time.perf_counter() - t0
        ledger.append(facts, now=NOW)
        ledger.make_checkpoint(now=NOW)
    append_s = time.perf_counter() - started - building
    ledger.close()

    t0 = time.perf_counter()
    reopened = AuditLedger(directory / "ledger.sqlite", key)
    reopen_s = time.perf_counter() - t0

    export = directory / "export.jsonl"
    t0 = time.perf_counter()
    with export.open("w", encoding="utf-8") as out:
        for line in export_lines(reopened, now=NOW):
            out.write(line + "\n")
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with export.open(encoding="utf-8") as lines:  # streamed, as `safebus audit verify FILE` could
        report = verify_export((line.rstrip("\n") for line in lines), pinned=reopened.identity)
    verify_s = time.perf_counter() - t0
    if not report.ok or report.leaves != leaves:
        raise SystemExit(f"the honest ledger did not verify: {report.problems[:3]}")
    export_bytes = export.stat().st_size

    rng = random.Random(7)
    sizes, checks = [], []
    for _ in range(200):
        n = rng.randrange(leaves)
        bundle = json.loads(json.dumps(inclusion_bundle(reopened, f"00000000-0000-4000-8000-{n:012d}", now=NOW)))
        sizes.append((len(json.dumps(bundle)), len(bundle["proof"])))
        t0 = time.perf_counter()
        assert check_inclusion(bundle, reopened.identity) == n
        checks.append(time.perf_counter() - t0)
    disk = (directory / "ledger.sqlite").stat().st_size
    return {
        "leaves": leaves,
        "append_leaves_per_s": round(leaves / append_s),
        "append_s": round(append_s, 2),
        "checkpoints": report.checkpoints,
        "reopen_s": round(reopen_s, 2),
        "export_s": round(export_s, 2),
        "export_mib": round(export_bytes / 2**20, 1),
        "verify_s": round(verify_s, 2),
        "verify_leaves_per_s": round(leaves / verify_s),
        "inclusion_bundle_bytes_median": statistics.median(s for s, _ in sizes),
        "inclusion_proof_hashes_max": max(h for _, h in sizes),
        "inclusion_check_us_median": round(statistics.median(checks) * 1e6, 1),
        "ledger_bytes_per_leaf": round(disk / leaves),
        "peak_rss_mib": round(_rss_peak_mib(), 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and save) its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "audit_ledger.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="safebus-ledger-bench-") as scratch:
        result = run(args.leaves, Path(scratch))
    for name, value in result.items():
        print(f"{name:34} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

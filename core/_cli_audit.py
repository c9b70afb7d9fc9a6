"""
``safebus audit``: the tamper-evident audit log's commands.

Kept apart from the main command line because the audit log has its own
audience (information-governance officers and auditors) and its own exit
codes: ``verify`` and ``check-proof`` exit 1 when the evidence does not hold,
so scripts and schedulers can alert on it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safebus.assembly import Settings

EXIT_NOT_VERIFIED = 1


def add_parser(commands: Any) -> None:
    """Add ``audit`` and its actions to the command line."""
    audit = commands.add_parser("audit", help="the tamper-evident audit log (RFC 9162 Merkle tree)")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    sequence = actions.add_parser("sequence", help="append every fact on the bus to the log (runs until stopped)")
    sequence.add_argument("--bootstrap")
    export = actions.add_parser("export", help="write the whole log, receipts and checkpoints as JSON lines")
    export.add_argument("file", type=Path)
    verify = actions.add_parser("verify", help="verify an export (or this machine's log); name any tampered leaf")
    verify.add_argument("file", nargs="?", type=Path, help="an export; the live log when omitted")
    verify.add_argument("--vkey", help="the log's verifier key as published (pin it; else the export's own)")
    prove = actions.add_parser("prove", help="print an inclusion proof for a fact, or a consistency proof")
    prove.add_argument("--event", metavar="FACT_ID", help="the fact (audit event id) to prove")
    prove.add_argument("--from-size", type=int, help="consistency: the older checkpoint's size")
    prove.add_argument("--to-size", type=int, help="consistency: the newer checkpoint's size")
    check = actions.add_parser("check-proof", help="check a proof bundle with only the log's verifier key")
    check.add_argument("file", type=Path)
    check.add_argument("--vkey", required=True, help="the log's verifier key as published")
    actions.add_parser("vkey", help="print the log's verifier key, for auditors to pin")
    actions.add_parser("checkpoints", help="list the signed checkpoints")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``audit`` action."""
    from safebus.assembly import build_audit_sequencer, open_ledger

    if args.audit_action == "sequence":
        sequencer = build_audit_sequencer(settings)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        sequencer.run(stop)
        return 0
    if args.audit_action == "check-proof":
        return _check_proof(args.file, args.vkey)
    if args.audit_action == "verify" and args.file is not None:
        return _verify_lines(args.file.read_text().splitlines(), args.vkey)
    ledger = open_ledger(settings)
    try:
        return _on_ledger(args, ledger)
    finally:
        ledger.close()


def _on_ledger(args: argparse.Namespace, ledger: Any) -> int:
    from safebus.consumers.audit_verify import consistency_bundle, export_lines, inclusion_bundle

    now = datetime.now(UTC)
    action = args.audit_action
    if action == "vkey":
        print(ledger.identity.vkey)
        return 0
    if action == "checkpoints":
        for checkpoint in ledger.checkpoints():
            print(f"{checkpoint.size:>10}  {checkpoint.root.hex()}  {checkpoint.created_at.isoformat()}")
        return 0
    if action == "export":
        count = 0
        with args.file.open("w", encoding="utf-8") as out:
            for line in export_lines(ledger, now=now):
                out.write(line + "\n")
                count += 1
        print(f"exported {ledger.size} leaves to {args.file}")
        return 0
    if action == "verify":
        return _verify_lines(list(export_lines(ledger, now=now)), args.vkey or ledger.identity.vkey)
    if action == "prove":
        if args.event:
            bundle = inclusion_bundle(ledger, args.event, now=now)
        elif args.from_size is not None and args.to_size is not None:
            bundle = consistency_bundle(ledger, args.from_size, args.to_size)
        else:
            print("safebus: audit prove needs --event ID, or --from-size and --to-size", file=sys.stderr)
            return 2
        print(json.dumps(bundle, indent=2, ensure_ascii=False))
        return 0
    raise AssertionError(action)


def _verify_lines(lines: list[str], vkey: str | None) -> int:
    from safebus.consumers.audit_ledger import LogIdentity
    from safebus.consumers.audit_verify import verify_export

    report = verify_export(lines, pinned=LogIdentity.from_vkey(vkey) if vkey else None)
    if report.ok:
        print(f"verified: {report.leaves} leaves, {report.checkpoints} checkpoints, "
              f"root {report.root.hex()} (all leaves covered by a signed checkpoint: "
              f"{'yes' if report.covered == report.leaves else f'no, {report.covered}'})")
        if vkey is None:
            print("note: checked against the export's own key; pin the published key with --vkey")
        return 0
    print(f"NOT VERIFIED: {len(report.problems)} problem(s)")
    for problem in report.problems[:50]:
        print(f"  {problem}")
    return EXIT_NOT_VERIFIED


def _check_proof(path: Path, vkey: str) -> int:
    from safebus.consumers.audit_ledger import LogIdentity
    from safebus.consumers.audit_verify import CONSISTENCY_FORMAT, check_consistency, check_inclusion
    from safebus.merkle import ProofError

    bundle = json.loads(path.read_text())
    identity = LogIdentity.from_vkey(vkey)
    try:
        if bundle.get("format") == CONSISTENCY_FORMAT:
            old, new = check_consistency(bundle, identity)
            print(f"consistent: the log of {new} leaves extends the log of {old} leaves")
        else:
            index = check_inclusion(bundle, identity)
            print(f"included: fact {bundle['fact'].get('event_id')} is leaf {index} of {bundle['tree_size']}")
    except ProofError as exc:
        print(f"NOT VERIFIED: {exc}")
        return EXIT_NOT_VERIFIED
    return 0

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
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safebus.app.cli_audit_backup import backup_ledger, restore_ledger
from safebus.app.cli_audit_rebuild import rebuild_ledger
from safebus.app.cli_health import add_health_argument, worker_health
from safebus.clock import utc_now
from safebus.jcs import canonical_model

if TYPE_CHECKING:
    from safebus.app.wiring import Settings

__all__ = ["EXIT_NOT_VERIFIED", "NEEDS_BUS", "add_parser", "officers_for", "run"]

EXIT_NOT_VERIFIED = 1


def add_parser(commands: Any) -> None:
    """Add ``audit`` and its actions to the command line."""
    audit = commands.add_parser("audit", help="the tamper-evident audit log (RFC 9162 Merkle tree)")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    sequence = actions.add_parser("sequence", help="append every fact on the bus to the log (runs until stopped)")
    sequence.add_argument("--bootstrap")
    add_health_argument(sequence)
    export = actions.add_parser("export", help="write the whole log, receipts and checkpoints as JSON lines")
    export.add_argument("file", type=Path)
    _viewer_arguments(export)
    verify = actions.add_parser("verify", help="verify an export (or this machine's log); name any tampered leaf")
    verify.add_argument("file", nargs="?", type=Path, help="an export; the live log when omitted")
    verify.add_argument("--vkey", help="the log's verifier key as published (pin it; else the export's own)")
    verify.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="FILE",
                        help="a signed checkpoint seen before (as published): the log must cover and extend it")
    verify.add_argument("--no-pin", action="store_true",
                        help="neither check nor advance the checkpoint this machine pinned at its last verify")
    prove = actions.add_parser("prove", help="print an inclusion proof for a fact, or a consistency proof")
    prove.add_argument("--event", metavar="FACT_ID", help="the fact (audit event id) to prove")
    prove.add_argument("--from-size", type=int, help="consistency: the older checkpoint's size")
    prove.add_argument("--to-size", type=int, help="consistency: the newer checkpoint's size")
    _viewer_arguments(prove)
    check = actions.add_parser("check-proof", help="check a proof bundle with only the log's verifier key")
    check.add_argument("file", type=Path)
    check.add_argument("--vkey", required=True, help="the log's verifier key as published")
    actions.add_parser("vkey", help="print the log's verifier key, for auditors to pin")
    rebuilt = actions.add_parser("rebuild", help="make this machine's ledger again from the bus's leaves and "
                                                 "checkpoints (a lost disk, a new host), every record proven")
    rebuilt.add_argument("--into", type=Path, help="write the rebuilt ledger here (default: the ledger's own place, "
                                                   "which must hold no leaves)")
    rebuilt.add_argument("--vkey", help="the log's verifier key (default: the restored log.vkey or log-key.pem)")
    rebuilt.add_argument("--bootstrap")
    backup = actions.add_parser("backup", help="copy this machine's ledger to a file while the sequencer runs, "
                                               "and check the copy (the log key is not in it)")
    backup.add_argument("file", type=Path)
    restore = actions.add_parser("restore", help="put a backup back, every leaf and checkpoint proven; the "
                                                 "sequencer takes in the rest from the bus")
    restore.add_argument("file", type=Path)
    restore.add_argument("--into", type=Path, help="restore here (default: the ledger's own place, which must "
                                                   "hold no leaves)")
    restore.add_argument("--vkey", help="the log's verifier key (default: the restored log.vkey or log-key.pem)")
    actions.add_parser("checkpoints", help="list the signed checkpoints")

    def reader(name: str, help_text: str) -> argparse.ArgumentParser:
        action: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        action.add_argument("--viewer", required=True, help="your officer id (every view is itself audited)")
        action.add_argument("--role", required=True, choices=["information-governance", "auditor"])
        action.add_argument("--bootstrap")
        return action

    query = reader("query", "search the audit trail (tokens, agencies, agreements, outcomes, time)")
    for name in ("subject", "agency", "recipient", "agreement", "outcome", "fact-type"):
        query.add_argument(f"--{name}")
    query.add_argument("--since", type=date.fromisoformat)
    query.add_argument("--until", type=date.fromisoformat)
    query.add_argument("--limit", type=int, default=100)
    chronology = reader("chronology", "everything shared or withheld about one person (subject access, DHR)")
    chronology.add_argument("--subject", metavar="TOKEN")
    chronology.add_argument("--first-name")
    chronology.add_argument("--surname")
    chronology.add_argument("--dob", type=date.fromisoformat, help="date of birth, YYYY-MM-DD")
    chronology.add_argument("--format", choices=["csv", "json"], default="csv")
    chronology.add_argument("--out", type=Path, help="write the export here (default: standard output)")
    stats = reader("stats", "monthly partnership statistics")
    stats.add_argument("--month", required=True, help="YYYY-MM (UK time)")
    stats.add_argument("--format", choices=["csv", "svg"], default="csv")
    stats.add_argument("--out", type=Path)
    flows = reader("flows", "what flowed between agencies, by agreement and outcome")
    flows.add_argument("--since", type=date.fromisoformat)
    flows.add_argument("--until", type=date.fromisoformat)
    web = actions.add_parser("web", help="the information-governance dashboard")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8090)
    web.add_argument("--plain-http", action="store_true", help="cookies without Secure (behind a local TLS proxy)")
    from safebus.app.cli_web import add_tls_arguments

    add_tls_arguments(web)
    web.add_argument("--bootstrap")
    from safebus.password_input import CREDENTIAL_SOURCES_HELP, add_password_arguments

    officer = actions.add_parser(
        "officer", help="dashboard accounts of information-governance officers",
        description=f"Dashboard accounts of information-governance officers. {CREDENTIAL_SOURCES_HELP}")
    officer.add_argument("officer_action", choices=["add", "reset-password", "remove"],
                         help="reset-password and remove also end the officer's dashboard sessions at once")
    officer.add_argument("--id", required=True)
    officer.add_argument("--role", choices=["information-governance", "auditor"], default="auditor")
    officer.add_argument("--name", help="display name (add)")
    add_password_arguments(officer)


def _viewer_arguments(action: argparse.ArgumentParser) -> None:
    action.add_argument("--viewer", required=True, help="your officer id (every view is itself audited)")
    action.add_argument("--role", required=True, choices=["information-governance", "auditor"])
    action.add_argument("--bootstrap")


NEEDS_BUS = frozenset({"sequence", "query", "chronology", "stats", "flows", "web", "export", "prove", "rebuild"})
"""Actions that reach the bus (the sequencer's checkpoints, every reader's view fact, a rebuild's records)."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``audit`` action."""
    from safebus.app.wiring import build_audit_sequencer, open_ledger

    if args.audit_action == "sequence":
        from safebus.consumers.audit.projection import AuditProjection
        from safebus.shutdown import stop_on_signals

        stop = stop_on_signals()  # first: SIGTERM must end the process even while it is still connecting
        sequencer = build_audit_sequencer(settings)
        path = settings.audit_dir / "projection.sqlite"
        projection = [AuditProjection(path)]

        def start_projection_again() -> None:  # the ledger was set aside: what it projected is not the log
            projection[0].close()
            path.unlink(missing_ok=True)
            projection[0] = AuditProjection(path)

        sequencer.on_appended = lambda _indexes: projection[0].catch_up(sequencer.ledger)  # queries stay current
        sequencer.on_ledger_set_aside = start_projection_again
        try:
            with worker_health("sequencer", args.health_port) as health:
                sequencer.run(stop, health=health)
        finally:
            sequencer.ledger.close()  # its write-ahead log folded in: the file alone is then the whole ledger
            projection[0].close()
        return 0
    if args.audit_action in ("query", "chronology", "stats", "flows"):
        return _read(args, settings)
    if args.audit_action == "web":
        return _web(args, settings)
    if args.audit_action == "officer":
        return _officer(args, settings)
    if args.audit_action == "rebuild":
        return rebuild_ledger(settings, vkey=args.vkey, into=args.into, out=sys.stdout, err=sys.stderr)
    if args.audit_action == "backup":
        return backup_ledger(settings, args.file, out=sys.stdout, err=sys.stderr)
    if args.audit_action == "restore":
        return restore_ledger(settings, args.file, vkey=args.vkey, into=args.into, out=sys.stdout, err=sys.stderr)
    if args.audit_action == "check-proof":
        return _check_proof(args.file, args.vkey)
    if args.audit_action == "verify" and args.file is not None:
        with args.file.open(encoding="utf-8") as lines:  # streamed: a million-leaf export is ~1 GB
            return _verify_lines((line.rstrip("\n") for line in lines), args.vkey, args, settings)
    ledger = open_ledger(settings)
    try:
        return _on_ledger(args, ledger, settings)
    finally:
        ledger.close()


def _record_view(args: argparse.Namespace, settings: Settings, view: str, parameters: dict[str, str], *,
                 results: int, subjects: Iterable[str] = ()) -> None:
    """Publish that `args.viewer` is about to see this (the log's own copy of who looked at what)."""
    from safebus.consumers.audit.reports import Viewer, viewed_fact

    _view_recorder(settings)(viewed_fact(viewer=Viewer(user_id=args.viewer, role=args.role), view=f"cli/{view}",
                                         parameters=parameters, results=results, at=utc_now(),
                                         subjects=subjects))


def _on_ledger(args: argparse.Namespace, ledger: Any, settings: Settings) -> int:
    from safebus.consumers.audit.verify import consistency_bundle, export_lines, inclusion_bundle

    now = utc_now()
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
        _record_view(args, settings, "export", {"leaves": str(ledger.size)}, results=ledger.size)
        with args.file.open("w", encoding="utf-8") as out:
            for line in export_lines(ledger, now=now):
                out.write(line + "\n")
                count += 1
        print(f"exported {ledger.size} leaves to {args.file}")
        return 0
    if action == "verify":
        return _verify_lines(export_lines(ledger, now=now), args.vkey or ledger.identity.vkey, args, settings)
    if action == "prove":
        if args.event:
            bundle = inclusion_bundle(ledger, args.event, now=now)
            _record_view(args, settings, "prove", {"event": args.event}, results=1,
                         subjects=bundle["fact"].get("subjects", ()))
        elif args.from_size is not None and args.to_size is not None:
            bundle = consistency_bundle(ledger, args.from_size, args.to_size)
        else:
            print("safebus: audit prove needs --event ID, or --from-size and --to-size", file=sys.stderr)
            return 2
        print(json.dumps(bundle, indent=2, ensure_ascii=False))
        return 0
    raise AssertionError(action)


def _verify_lines(lines: Iterable[str], vkey: str | None, args: argparse.Namespace, settings: Settings) -> int:
    """
    Verify export lines against the given checkpoints and this machine's pin; advance the pin if they verify.

    The pin is looked up by the pinned key (`vkey`), else by the key the export names.
    """
    from itertools import chain

    from safebus.consumers.audit.ledger import LogIdentity
    from safebus.consumers.audit.pins import CheckpointPins
    from safebus.consumers.audit.verify import verify_export

    stream = iter(lines)
    first = next(stream, "")
    seen = [_checkpoint_note(path) for path in args.checkpoint]
    pins, pin_identity = None, None
    if not args.no_pin:
        pins = CheckpointPins(settings.state_dir / "audit-pins")
        pin_identity = _header_identity(vkey, first)
        pinned_note = pins.load(pin_identity) if pin_identity else None
        if pinned_note is not None:
            seen.append(pinned_note)
    report = verify_export(chain([first], stream), pinned=LogIdentity.from_vkey(vkey) if vkey else None, seen=seen)
    if report.ok:
        print(f"verified: {report.leaves} leaves, {report.checkpoints} checkpoints, "
              f"root {report.root.hex()} (all leaves covered by a signed checkpoint: "
              f"{'yes' if report.covered == report.leaves else f'no, {report.covered}'})")
        if seen:
            print(f"extends every checkpoint seen before ({report.extended}): consistency proved")
        if (pins is not None and pin_identity is not None and report.newest and report.newest_note
                and pins.advance(pin_identity, report.newest_note, report.newest)):
            print(f"pinned the checkpoint of {report.newest.size} leaves in {pins.path(pin_identity)}")
        if vkey is None:
            print("note: checked against the export's own key; pin the published key with --vkey")
        return 0
    print(f"NOT VERIFIED: {len(report.problems)} problem(s)")
    for problem in report.problems[:50]:
        print(f"  {problem}")
    return EXIT_NOT_VERIFIED


def _checkpoint_note(path: Path) -> str:
    """A checkpoint file's signed note: as published on the checkpoint topic, or an export's checkpoint line."""
    text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return str(parsed["checkpoint"]) if isinstance(parsed, dict) and "checkpoint" in parsed else text


def _header_identity(vkey: str | None, header_line: str) -> Any:
    """The log identity a verification's pin belongs to: the pinned key, else the export header's (or None)."""
    from safebus.consumers.audit.ledger import LogIdentity

    try:
        named = vkey or json.loads(header_line).get("vkey")
        return LogIdentity.from_vkey(str(named)) if named else None
    except (ValueError, AttributeError):
        return None


def _check_proof(path: Path, vkey: str) -> int:
    from safebus.consumers.audit.ledger import LogIdentity
    from safebus.consumers.audit.verify import CONSISTENCY_FORMAT, check_consistency, check_inclusion
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


def _view_recorder(settings: Settings, *, web: bool = False) -> Any:
    """
    Publishes each view fact to the audit topic and waits for the broker: no view goes unrecorded.

    Signed as the audit dashboard (`web`) or the command line, so the sequencer can attribute it.
    """
    from safebus.fact_signing import Service, fact_publisher
    from safebus.records import EVENT_ID, Output
    from safebus.schemas.audit import AuditViewed

    facts = fact_publisher(settings.store, Service.AUDIT_WEB if web else Service.CONSOLE,
                           audit_topic=settings.names.audit, bootstrap=settings.bootstrap)

    def record(fact: AuditViewed) -> None:
        facts.publish([Output(topic=settings.names.audit, key=fact.event_id.encode(),
                              value=canonical_model(fact), headers=((EVENT_ID, fact.event_id.encode()),))])

    return record


def _projection(settings: Settings) -> Any:
    """The projection, caught up with this machine's ledger."""
    from safebus.app.wiring import open_ledger
    from safebus.consumers.audit.projection import AuditProjection

    projection = AuditProjection(settings.audit_dir / "projection.sqlite")
    ledger = open_ledger(settings, read_only=True)
    try:
        projection.catch_up(ledger)
    finally:
        ledger.close()
    return projection


def _day(value: date | None) -> datetime | None:
    return datetime.combine(value, time(), UTC) if value else None


def _read(args: argparse.Namespace, settings: Settings) -> int:
    from safebus.app.wiring import tokeniser_for
    from safebus.consumers.audit.projection import Filters
    from safebus.consumers.audit.reports import AuditedReader, IdentifyingDetails, Viewer

    reader = AuditedReader(_projection(settings), record_view=_view_recorder(settings),
                           clock=utc_now, channel="cli")
    viewer = Viewer(user_id=args.viewer, role=args.role)
    action = args.audit_action
    if action == "query":
        filters = Filters(subject=args.subject, agency=args.agency, recipient=args.recipient,
                          agreement=args.agreement, outcome=args.outcome, fact_type=args.fact_type,
                          since=_day(args.since), until=_day(args.until), limit=args.limit)
        for row in reader.query(viewer, filters):
            print(f"{row.index:>8} {row.at.isoformat()} {row.fact_type:32} {row.agency or '-':28} "
                  f"-> {row.recipient or '-':28} {' '.join(row.subjects)}")
        return 0
    if action == "chronology":
        names: dict[str, str] | None = None
        if args.first_name or args.surname or args.dob:
            if args.role != "information-governance":
                print("safebus: only an information-governance officer may look a person up by name",
                      file=sys.stderr)
                return 2
            if not (args.first_name and args.surname and args.dob):
                print("safebus: give --first-name, --surname and --dob together", file=sys.stderr)
                return 2
            details = IdentifyingDetails(first_name=args.first_name, surname=args.surname,
                                         date_of_birth=args.dob)
            tokeniser = tokeniser_for(settings.state_dir)
            subject, names, how = details.token(tokeniser), details.names(tokeniser), "name-and-date-of-birth"
        elif args.subject:
            subject, how = args.subject, "token"
        else:
            print("safebus: audit chronology needs --subject TOKEN, or --first-name, --surname and --dob",
                  file=sys.stderr)
            return 2
        export = (reader.chronology_csv if args.format == "csv" else reader.chronology_json)(
            viewer, subject, names=names, identified_by=how)
        _emit(export, args.out)
        return 0
    if action == "stats":
        _emit((reader.statistics_csv if args.format == "csv" else reader.statistics_svg)(viewer, args.month),
              args.out)
        return 0
    for flow in reader.flows(viewer, since=_day(args.since), until=_day(args.until)):
        print(flow)
    return 0


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)


def officers_for(settings: Settings) -> Any:
    """The audit officers' accounts (`Officers`): their file, or the shared database's copy."""
    from safebus.consumers.audit.officers import Officers, default_officers_path
    from safebus.consumers.web.account_store import account_source

    path = default_officers_path(settings.state_dir)
    return Officers(path, source=account_source(path, name="officers", what="officer"))


def _web(args: argparse.Namespace, settings: Settings) -> int:
    from safebus.app.cli_web import tls_from_args
    from safebus.app.wiring import open_ledger, tokeniser_for
    from safebus.consumers.audit.web import AuditDashboard
    from safebus.consumers.web.server_secret import load_or_create_secret
    from safebus.consumers.web.serving import run_app

    tls = tls_from_args(args)
    dashboard = AuditDashboard(
        projection=_projection(settings), ledger=open_ledger(settings, read_only=True),
        tokeniser=tokeniser_for(settings.state_dir), officers=officers_for(settings),
        record_view=_view_recorder(settings, web=True), clock=utc_now,
        secret=load_or_create_secret(settings.audit_dir / "web-secret"), secure_cookies=not args.plain_http,
        web_state=settings.audit_dir)
    run_app(dashboard.app(), host=args.host, port=args.port, tls=tls)
    return 0


def _officer(args: argparse.Namespace, settings: Settings) -> int:
    from safebus.consumers.audit.officers import OfficerRole
    from safebus.consumers.web.sessions import end_sessions_of
    from safebus.password_input import new_password

    officers = officers_for(settings)
    if args.officer_action == "remove":
        officers.remove(args.id)
        ended = end_sessions_of(settings.audit_dir, args.id)
        print(f"remove: {args.id} ({ended} dashboard sessions ended)")
        return 0
    password = new_password(args, what="officer")
    if args.officer_action == "add":
        officers.add(args.id, role=OfficerRole(args.role), display_name=args.name or args.id, password=password)
    else:
        officers.reset_password(args.id, password)
        end_sessions_of(settings.audit_dir, args.id)
    print(f"{args.officer_action}: {args.id}")
    return 0

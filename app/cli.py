"""
The ``safebus`` command: a thin shell over the public API, with no domain logic.

Global settings come from flags, then the environment:
``SAFEBUS_HOME`` (state directory), ``KAFKA_BOOTSTRAP_SERVERS`` (a broker that
is not the local one) and ``SAFEBUS_TOPIC_PREFIX`` (topic namespace).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from safebus import logs
from safebus.app import cli_acls, cli_audit, cli_broker, cli_config, cli_db, cli_encompass, cli_supervision
from safebus.app.cli_health import add_health_argument, worker_health
from safebus.directory import AgencyKind
from safebus.errors import ConfigError, SafebusError
from safebus.jcs import canonical_model
from safebus.paths import state_dir
from safebus.settings_file import load_settings_file
from safebus.topics import DEFAULT_PREFIX, TopicNames

if TYPE_CHECKING:
    from safebus.app.wiring import Settings
    from safebus.processors.replay import PayloadWindow

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safebus", description="Lawful, minimal, provable safeguarding shares.")
    parser.add_argument("--state-dir", type=Path, default=None, help="state directory (default: $SAFEBUS_HOME)")
    parser.add_argument("--prefix", default=os.environ.get("SAFEBUS_TOPIC_PREFIX", DEFAULT_PREFIX),
                        help="topic name prefix (default: safebus)")
    parser.add_argument("--log-level", default=os.environ.get("SAFEBUS_LOG_LEVEL", "WARNING"))
    commands = parser.add_subparsers(dest="command", required=True)

    cli_broker.add_parser(commands)

    topics = commands.add_parser("topics", help="topics as code")
    topics.add_argument("action", choices=["apply", "list"])
    topics.add_argument("--bootstrap")

    partnership = commands.add_parser("partnership", help="the agency directory and keys")
    partnership.add_argument("action", choices=["init", "show"])
    partnership.add_argument("--force", action="store_true", help="replace an existing directory and keys")

    agency = commands.add_parser("agency", help="administer the signed agency directory")
    agency.add_argument("action", choices=["add", "list", "rotate-keys", "revoke", "retire", "publish", "sync"])
    agency.add_argument("--agency", metavar="ID", help="the agency's directory id")
    agency.add_argument("--kind", choices=[k.value for k in AgencyKind])
    agency.add_argument("--name")
    agency.add_argument("--urn", help="a school's DfE URN")
    agency.add_argument("--key", metavar="KEY_ID",
                        help="signing key id of the generation (revoke, retire); retire without --key retires "
                             "the whole agency")
    agency.add_argument("--bootstrap", help="also make the change live: create its topics and publish it to the "
                                            "directory topic, which running workers follow")

    gateway = commands.add_parser("gateway", help="the HTTP ingress gateway for systems that cannot speak Kafka")
    gateway.add_argument("action", choices=["run", "credential"])
    gateway.add_argument("credential_action", nargs="?", choices=["add", "revoke"])
    gateway.add_argument("credential_id", nargs="?", help="the credential to revoke")
    gateway.add_argument("--agency", metavar="ID", help="the agency a new credential authenticates")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8443)
    gateway.add_argument("--bootstrap")
    add_health_argument(gateway)

    processor = commands.add_parser(
        "processor", help="the router (a Faust worker)",
        description="Route incidents. Incidents dated in the future (beyond SAFEBUS_MAX_CLOCK_SKEW_SECONDS) or older "
                    "than SAFEBUS_MAX_INCIDENT_AGE_DAYS (default 90) are dead-lettered as implausible-time; a backfill "
                    "of older incidents needs --backfill-from with --backfill-reason and --by, and is audited.")
    processor.add_argument("action", choices=["run"])
    processor.add_argument("--bootstrap")
    processor.add_argument("--backfill-from", type=date.fromisoformat, metavar="YYYY-MM-DD",
                           help="also route incidents since this date (recorded as audit.backfill-authorised)")
    processor.add_argument("--backfill-reason", help="why the backfill is needed (with --backfill-from)")
    processor.add_argument("--by", metavar="OPERATOR_ID", help="who authorised the backfill (with --backfill-from)")
    add_health_argument(processor)

    inbox = commands.add_parser("inbox", help="school inboxes")
    inbox.add_argument("action", choices=["run", "show", "web"])
    inbox.add_argument("--host", default="127.0.0.1", help="web: the address to serve on")
    inbox.add_argument("--port", type=int, default=8080, help="web: the port to serve on")
    inbox.add_argument("--plain-http", action="store_true",
                       help="web: cookies without the Secure flag (only behind a TLS proxy on the same host)")
    from safebus.app.cli_web import add_tls_arguments

    add_tls_arguments(inbox, prefix="web: ")
    inbox.add_argument("--bootstrap")
    inbox.add_argument("--school", metavar="URN", help="the school's URN (for show)")
    add_health_argument(inbox)

    schemas = commands.add_parser("schemas", help="data contracts: validate payloads, generate and check schemas")
    schemas.add_argument("action", choices=["validate", "generate", "check", "release", "list"])
    schemas.add_argument("file", nargs="?", type=Path, help="the JSON payload to validate")

    erase = commands.add_parser("erase", help="erase a data subject by destroying their keys (crypto-shredding)")
    erase.add_argument("--subject", required=True, metavar="TOKEN", help="the subject's token (safebus subject token)")
    erase.add_argument("--reason", required=True, help="why, for the audit trail")
    erase.add_argument("--by", required=True, help="who asked, for the audit trail")
    erase.add_argument("--bootstrap")

    subject = commands.add_parser("subject", help="pseudonymous subject tokens (for authorised officers)")
    subject.add_argument("action", choices=["token"])
    subject.add_argument("--first-name", required=True)
    subject.add_argument("--surname", required=True)
    subject.add_argument("--dob", required=True, type=date.fromisoformat, help="date of birth, YYYY-MM-DD")

    queue = commands.add_parser("queue", help="work queues of children's services, the DA hub, IDVA, MARAC, health")
    queue.add_argument("action", choices=["run", "show", "take"])
    queue.add_argument("--recipient", metavar="ID", help="the agency whose queue (show, take)")
    queue.add_argument("--referral", metavar="REFERRAL_ID", help="the referral to take")
    queue.add_argument("--by", metavar="STAFF_ID", help="who takes it")
    queue.add_argument("--bootstrap")
    add_health_argument(queue)

    rules = commands.add_parser("rules", help="the Information Sharing Agreements")
    rules.add_argument("action", choices=["explain", "check", "list"])
    rules.add_argument("event", nargs="?", type=Path, help="a police incident payload (JSON), for explain")

    cli_audit.add_parser(commands)
    cli_encompass.add_parsers(commands)
    cli_supervision.add_parsers(commands)
    cli_config.add_parser(commands)
    cli_db.add_parser(commands)
    cli_acls.add_parser(commands)

    demo = commands.add_parser("demo", help="run the whole thin path end to end")
    demo.add_argument("--bootstrap", help="use this broker instead of starting the local one")
    demo.add_argument("--incidents", type=int, default=40)
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the flow")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        load_settings_file()  # first: the parser's defaults and every component read the environment it fills
    except ConfigError as exc:
        print(f"safebus: configuration refused: {exc}", file=sys.stderr)
        return 2
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "backfill_from", None) and not (args.backfill_reason and args.by):
        parser.error("a backfill needs --backfill-reason TEXT and --by OPERATOR_ID (both are audited)")
    logs.configure(level=args.log_level.upper())
    state = (args.state_dir or state_dir()).resolve()
    names = TopicNames(prefix=args.prefix)
    try:
        return _dispatch(args, state, names)
    except SafebusError as exc:
        print(f"safebus: {exc.diagnostics()}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as exc:  # a missing file is a setup problem, not a crash
        print(f"safebus: {exc.strerror}: {exc.filename} (is SAFEBUS_HOME / --state-dir the partnership's "
              "state directory? 'safebus partnership init' or 'safebus demo' creates one)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, state: Path, names: TopicNames) -> int:
    from safebus.app.wiring import Settings, resolve_bootstrap

    if args.command == "broker":
        return cli_broker.broker(args.action, state, secure=args.secure, nodes=args.nodes)
    if args.command == "partnership":
        return _partnership(args.action, state, force=args.force)
    if args.command == "config":
        return cli_config.check(state, names, sys.stdout, sys.stderr)
    if args.command == "db":
        return cli_db.run(args, Settings(state_dir=state, bootstrap="", names=names), sys.stdout)
    if args.command == "status" or (args.command == "up" and args.status):
        return cli_supervision.status(state)
    if args.command == "down":
        return cli_supervision.down(state)
    if args.command == "demo":
        from safebus.app.demo import run_demo

        return run_demo(state_dir=state, bootstrap=args.bootstrap, names=names, incidents=args.incidents,
                        seed=args.seed, timeout_s=args.timeout, out=sys.stdout)
    if args.command == "schemas":
        return _schemas(args.action, args.file)
    if args.command == "agency":
        return _agency(args, state, names)
    if args.command == "rules":
        return _rules(args.action, args.event, state)
    if args.command == "gateway" and args.action == "credential":
        return _gateway_credential(Settings(state_dir=state, bootstrap="", names=names), args)
    if args.command == "subject":
        from safebus.app.wiring import tokeniser_for

        print(tokeniser_for(state).person(first_name=args.first_name, surname=args.surname, date_of_birth=args.dob))
        return 0
    if args.command == "queue" and args.action == "show":
        return _queue_show(Settings(state_dir=state, bootstrap="", names=names), args.recipient)
    if args.command == "inbox" and args.action == "show":
        return _inbox_show(Settings(state_dir=state, bootstrap="", names=names), args.school)
    if args.command == "key-adult":
        return cli_encompass.key_adult(args, Settings(state_dir=state, bootstrap="", names=names))
    if args.command == "calendar":
        return cli_encompass.due_by(args)
    if args.command == "encompass" and args.action == "report":
        return cli_encompass.run(args, Settings(state_dir=state, bootstrap="", names=names))
    if args.command == "audit" and args.audit_action not in cli_audit.NEEDS_BUS:
        return cli_audit.run(args, Settings(state_dir=state, bootstrap="", names=names))
    settings = Settings(state_dir=state, bootstrap=resolve_bootstrap(args.bootstrap, state), names=names)
    if args.command == "audit":
        return cli_audit.run(args, settings)
    if args.command == "encompass":
        return cli_encompass.run(args, settings)
    if args.command == "inbox" and args.action == "web":
        from safebus.app.cli_web import tls_from_args

        return cli_encompass.inbox_web(settings, host=args.host, port=args.port, plain_http=args.plain_http,
                                       tls=tls_from_args(args))
    if args.command == "acls":
        return cli_acls.acls(settings, dry_run=args.dry_run, out=sys.stdout)
    if args.command == "topics":
        return _topics(args.action, settings)
    if args.command == "up":
        return cli_supervision.up(settings, log_level=args.log_level.upper())
    if args.command == "processor":
        return _processor(settings, args)
    if args.command == "inbox":
        return _inbox_run(settings, health_port=args.health_port)
    if args.command == "gateway":
        return _gateway_run(settings, host=args.host, port=args.port, health_port=args.health_port)
    if args.command == "queue":
        return _queue(settings, args)
    if args.command == "erase":
        return _erase(settings, token=args.subject, reason=args.reason, requested_by=args.by)
    raise AssertionError(f"unhandled command {args.command}")


def _partnership(action: str, state: Path, *, force: bool) -> int:
    from safebus.directory import PartnershipStore
    from safebus.producers.synthetic import create_partnership

    store = PartnershipStore(state)
    if action == "init":
        if store.exists() and not force:
            print(f"a partnership already exists in {state} (use --force to replace it)")
            return 0
        create_partnership(store)
    directory = store.load_directory()
    print(directory.partnership)
    for agency in directory.agencies:
        print(f"  {agency.kind.value:20} {agency.id:24} {agency.name}{f' URN {agency.urn}' if agency.urn else ''}")
    return 0


def _agency(args: argparse.Namespace, state: Path, names: TopicNames) -> int:
    from safebus.app import agency_admin
    from safebus.app.wiring import resolve_bootstrap
    from safebus.clock import utc_now
    from safebus.directory import PartnershipStore

    store, now = PartnershipStore(state), utc_now()
    if args.action == "list":
        for signed in store.signed_entries():
            entry = signed.entry
            print(f"{entry.id:30} {entry.kind.value:20} {entry.name}  (signed until {entry.expires_at:%Y-%m-%d})")
            for generation in entry.keys:
                print(f"    key {generation.signing_key_id} {generation.status.value:10} "
                      f"since {(generation.status_changed_at or generation.created_at):%Y-%m-%d %H:%M}")
        return 0
    if args.action == "sync":
        bootstrap = resolve_bootstrap(args.bootstrap, state)
        partnership = store.load_directory().partnership if store.exists() else "partnership"
        refused = agency_admin.sync_from_topic(store, bootstrap=bootstrap, topic=names.agencies,
                                               partnership=partnership, now=now)
        print(f"directory rebuilt from {names.agencies}; refused: {', '.join(refused) or 'none'}")
        return 1 if refused else 0
    if args.action == "publish":
        agency_admin.publish_entries(resolve_bootstrap(args.bootstrap, state), names.agencies, store.signed_entries())
        print(f"published {len(store.signed_entries())} signed entries to {names.agencies}")
        return 0
    if not args.agency:
        print(f"safebus: agency {args.action} needs --agency", file=sys.stderr)
        return 2
    if args.action == "add":
        if not (args.kind and args.name):
            print("safebus: agency add needs --kind and --name", file=sys.stderr)
            return 2
        bootstrap = args.bootstrap
        signed = agency_admin.add_agency(
            store, agency_id=args.agency, kind=AgencyKind(args.kind), name=args.name, urn=args.urn, now=now,
            prepare=(lambda entry: agency_admin.create_topics(entry, bootstrap=bootstrap, names=names))
            if bootstrap else None)
    elif args.action == "rotate-keys":
        signed = agency_admin.rotate_keys(store, args.agency, now=now)
    elif args.action == "retire" and not args.key:
        signed = agency_admin.retire_agency(store, args.agency, now=now)
    else:
        if not args.key:
            print(f"safebus: agency {args.action} needs --key KEY_ID (see 'safebus agency list')", file=sys.stderr)
            return 2
        change = agency_admin.revoke_key if args.action == "revoke" else agency_admin.retire_key
        signed = change(store, args.agency, args.key, now=now)
    if args.bootstrap:
        agency_admin.publish_change(store, signed, bootstrap=args.bootstrap, names=names)
    print(f"{args.action}: {signed.entry.id} now has keys "
          + ", ".join(f"{g.signing_key_id} ({g.status.value})" for g in signed.entry.keys))
    return 0


def _gateway_credential(settings: Settings, args: argparse.Namespace) -> int:
    from safebus.producers.gateway import add_credential, default_credentials_path, revoke_credential

    path = default_credentials_path(settings.state_dir)
    if args.credential_action == "add" and args.agency:
        token = add_credential(path, args.agency, directory=settings.store.load_directory())
        print(f"bearer token for {args.agency} (shown once; only its hash is kept):\n{token}")
        return 0
    if args.credential_action == "revoke" and args.credential_id:
        revoke_credential(path, args.credential_id)
        print(f"revoked {args.credential_id}")
        return 0
    print("safebus: gateway credential add --agency ID | gateway credential revoke CREDENTIAL_ID", file=sys.stderr)
    return 2


def _gateway_run(settings: Settings, *, host: str, port: int, health_port: int | None) -> int:
    from safebus.errors import ConfigError
    from safebus.native_memory import tune_malloc
    from safebus.producers.gateway import Gateway, default_credentials_path
    from safebus.shutdown import stop_on_signals

    tune_malloc()  # before the first worker thread: glibc's defaults ratchet native memory up (docs/adr/0011)
    credentials = default_credentials_path(settings.state_dir)
    if not credentials.exists():
        raise ConfigError(f"no gateway credentials yet ({credentials} is missing): create one with "
                          "'safebus gateway credential add --agency ID', then run 'safebus gateway run' again")
    stop = stop_on_signals()
    gateway = Gateway(settings, credentials, host=host, port=port)
    print(f"gateway listening on {gateway.url}", flush=True)
    with worker_health("gateway", health_port) as health:
        gateway.run(stop, health=health)
    return 0


def _rules(action: str, event: Path | None, state: Path) -> int:
    import tempfile

    from safebus.app.wiring import tokeniser_for
    from safebus.clock import utc_now
    from safebus.directory import PartnershipStore
    from safebus.processors.agreements import load_agreements
    from safebus.processors.engine import SharingEngine, incident_view
    from safebus.processors.explain import explain_event
    from safebus.producers.synthetic import create_partnership
    from safebus.schemas.encompass import EncompassNotification
    from safebus.schemas.registry import by_type

    agreements = load_agreements()  # raises ConfigError naming the file and clause if any is wrong
    if action == "list":
        for agreement in agreements:
            print(f"{agreement.id} v{agreement.version}: {agreement.title}")
            for rule in agreement.rules:
                print(f"    {rule.clause:5} {rule.name:28} for each {rule.for_each:6} -> {rule.outcome.value}"
                      f"{' to ' + rule.recipient if rule.recipient else ''}")
        return 0
    store = PartnershipStore(state)
    scratch = None
    if not store.exists():  # explain against a throw-away synthetic partnership
        scratch = tempfile.TemporaryDirectory()
        store = PartnershipStore(Path(scratch.name))
        create_partnership(store)
    engine = SharingEngine(agreements=agreements, directory=store.load_directory(),
                           tokeniser=tokeniser_for(store.state_dir))
    if action == "check":
        print(f"{len(agreements)} agreements valid: {', '.join(f'{a.id} v{a.version}' for a in agreements)}")
        return 0
    if event is None:
        print("safebus: rules explain needs an EVENT.json (a police incident, risk assessment or MARAC event)",
              file=sys.stderr)
        return 2
    try:
        text = event.read_text()
    except OSError as exc:
        print(f"safebus: cannot read {event} ({exc.strerror}); try 'safebus rules explain "
              "schemas/examples/police.domestic-abuse-incident.json'", file=sys.stderr)
        return 2
    spec = by_type(str(json.loads(text).get("event_type")))
    if spec is None:
        print("safebus: the payload's event_type is not a known contract", file=sys.stderr)
        return 2
    payload = spec.model.model_validate_json(text)
    routed = incident_view(payload) if isinstance(payload, EncompassNotification) else payload
    print("\n".join(explain_event(engine, routed, now=utc_now())))
    if scratch:
        scratch.cleanup()
    return 0


def _queue_show(settings: Settings, recipient: str | None) -> int:
    from safebus.app.queue_wiring import show_queue

    if not recipient:
        print("safebus: queue show needs --recipient ID", file=sys.stderr)
        return 2
    print("\n".join(show_queue(settings, recipient)))
    return 0


def _queue(settings: Settings, args: argparse.Namespace) -> int:
    from safebus.app.queue_wiring import build_queue_worker, take_referral
    from safebus.clock import utc_now

    if args.action == "run":
        from safebus.shutdown import stop_on_signals

        stop = stop_on_signals()  # first: SIGTERM must end the process even while it is still connecting
        worker = build_queue_worker(settings, clock=utc_now)
        with worker_health("queues", args.health_port) as health:
            worker.run(stop, health=health)
        return 0
    if not (args.recipient and args.referral and args.by):
        print("safebus: queue take needs --recipient, --referral and --by", file=sys.stderr)
        return 2
    result = take_referral(settings, args.recipient, args.referral, args.by, clock=utc_now)
    print(f"{'taken' if result.taken else 'already taken'}: {args.referral}; "
          f"receipts published: {', '.join(result.receipts) or 'none'}")
    return 0


def _erase(settings: Settings, *, token: str, reason: str, requested_by: str) -> int:
    from safebus.app.erasure import erase_subject
    from safebus.app.wiring import key_service_for
    from safebus.clock import utc_now
    from safebus.fact_signing import Service, fact_publisher

    fact = erase_subject(
        token=token, requested_by=requested_by, reason=reason, keys=key_service_for(settings.state_dir),
        bootstrap=settings.bootstrap, facts=fact_publisher(settings.store, Service.CONSOLE,
                                                           audit_topic=settings.names.audit,
                                                           bootstrap=settings.bootstrap),
        operator=settings.store.load_directory().router().id, now=utc_now(),
    )
    print(f"erased {token}: destroyed {len(fact.key_ids_destroyed)} key(s); recorded as {fact.event_id}")
    for key_id in fact.key_ids_destroyed:
        print(f"  {key_id}")
    return 0


def _schemas(action: str, file: Path | None) -> int:
    from safebus.app import schema_publication as publication
    from safebus.schemas.registry import CONTRACTS
    from safebus.schemas.validation import validate_payload

    if action == "validate":
        if file is None:
            print("safebus: schemas validate needs a FILE", file=sys.stderr)
            return 2
        try:
            payload = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            print(f"{file}: not readable JSON: {exc}")
            return 1
        issues = validate_payload(payload)
        for issue in issues:
            print(f"{file}: {issue}")
        if not issues:
            print(f"{file}: valid {payload['event_type']} {payload['schema_version']}")
        return 1 if issues else 0
    if action == "list":
        for spec in CONTRACTS:
            print(f"{spec.event_type:40} {spec.version:8} {spec.compatibility.value:20} {spec.family.value}")
        return 0
    if action == "generate":
        for path in publication.generate():
            print(f"wrote {path}")
    elif action == "release":
        for name in publication.release():
            print(f"released {name}")
    problems = publication.problems()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def _topics(action: str, settings: Settings) -> int:
    from safebus.app.wiring import topics_for
    from safebus.deploy.topics_admin import apply_topics

    specs = topics_for(settings)
    if action == "list":
        for spec in specs:
            print(f"{spec.name:60} {spec.role.value:10} partitions={spec.partitions} {spec.config}")
        return 0
    for change in apply_topics(settings.bootstrap, specs):
        print(f"{change.action:20} {change.name}")
    return 0


def _processor(settings: Settings, args: argparse.Namespace) -> int:
    from safebus.app.wiring import announce_ruleset, build_handler, ingress_topics, restore_router_state
    from safebus.live_directory import follow
    from safebus.processors.app import create_app, run_worker
    from safebus.shutdown import stop_on_signals

    stop_on_signals()  # until Faust installs its own handlers (which arm the same hard exit)
    restored = restore_router_state(settings)  # a lost disk or a new machine resumes with the same state
    handler = build_handler(settings, backfill_from=args.backfill_from)
    announce_ruleset(settings)
    if args.backfill_from:
        _announce_backfill(settings, handler.payload_window, args)
    logs.get_logger("cli").info("router_state_restored", changes=restored)
    follow(handler.directory, bootstrap=settings.bootstrap, topic=settings.names.agencies, wait=True)
    with worker_health("router", args.health_port) as health:
        app = create_app(bootstrap=settings.bootstrap, handler=handler,
                         ingress_topics=lambda: ingress_topics(settings, handler.directory()),
                         datadir=settings.state_dir / "faust", app_id=f"{settings.names.prefix}-router", health=health)
        run_worker(app, health=health)
    return 0


def _announce_backfill(settings: Settings, window: PayloadWindow, args: argparse.Namespace) -> None:
    """Put the backfill on the audit record before the first old incident is routed."""
    from safebus.clock import utc_now
    from safebus.kafka_io import produce_all, reliable_producer
    from safebus.processors.backfill import backfill_authorised
    from safebus.records import EVENT_ID, Output

    fact = backfill_authorised(window=window, backfill_from=args.backfill_from, by=args.by,
                               reason=args.backfill_reason, producer=settings.store.load_directory().router().id,
                               at=utc_now())
    produce_all(reliable_producer(settings.bootstrap), [Output(
        topic=settings.names.audit, key=fact.event_id.encode(), value=canonical_model(fact),
        headers=((EVENT_ID, fact.event_id.encode()),))])
    print(f"backfill from {args.backfill_from} authorised by {args.by}: recorded as {fact.event_id}", flush=True)


def _inbox_run(settings: Settings, *, health_port: int | None) -> int:
    from safebus.app.encompass_wiring import alert_notice, mail_for
    from safebus.app.wiring import build_inbox_worker
    from safebus.shutdown import stop_on_signals

    stop = stop_on_signals()  # first: SIGTERM must end the process even while it is still connecting
    worker = build_inbox_worker(settings)
    mail = mail_for(settings, "inbox")
    if mail is not None:
        worker.notify = alert_notice(settings, mail.notifier, worker.directory)  # the same live directory
        mail.start(stop)
    with worker_health("inbox", health_port) as health:
        worker.run(stop, health=health)
    return 0


def _inbox_show(settings: Settings, urn: str | None) -> int:
    from safebus.app.wiring import inbox_opener
    from safebus.consumers.inbox.store import InboxStore

    if not urn:
        print("safebus: inbox show needs --school URN", file=sys.stderr)
        return 2
    school = settings.store.load_directory().school_by_urn(urn)
    store = InboxStore(settings.inbox_location)
    try:
        alerts = store.alerts(urn, inbox_opener(settings))
    finally:
        store.close()
    print(f"Operation Encompass inbox: {school.name if school else 'unknown setting'} (URN {urn}), "
          f"{len(alerts)} alert(s)")
    for alert in alerts:
        print(f"  {alert.describe()}")
    return 0

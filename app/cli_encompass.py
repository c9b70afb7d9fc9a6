"""
``safebus calendar``, ``safebus encompass`` and ``safebus inbox web``: Operation Encompass delivery.

The commands a partnership runs so that a Key Adult knows before the next
school day starts, or someone is told why not: the deadline of any incident
for any setting, the monitor that escalates, the web inbox for Key Adults, and
the on-time report (terminal or CSV).
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safebus.app.cli_health import add_health_argument, worker_health
from safebus.clock import utc_now

if TYPE_CHECKING:
    import ssl

    from safebus.app.wiring import Settings
    from safebus.consumers.inbox.web import SchoolInbox

__all__ = ["add_parsers", "build_school_inbox", "due_by", "inbox_web", "inbox_web_state", "key_adult", "run"]


def add_parsers(commands: Any) -> None:
    """Add ``calendar`` and ``encompass`` to the command line."""
    calendar = commands.add_parser("calendar", help="setting calendars and Operation Encompass deadlines")
    calendar.add_argument("action", choices=["due-by"])
    calendar.add_argument("--urn", required=True, help="the setting's URN")
    calendar.add_argument("--at", required=True, type=datetime.fromisoformat,
                          help="when the alert is shared (or, for the police's deadline, when the incident "
                               "happened), ISO 8601 with a UTC offset")
    encompass = commands.add_parser("encompass", help="Operation Encompass deadlines, escalation and on-time report")
    encompass.add_argument("action", choices=["monitor", "report"])
    encompass.add_argument("--csv", type=Path, help="write the report as CSV to this file")
    encompass.add_argument("--since", type=date.fromisoformat, help="report: incidents recorded from this date")
    encompass.add_argument("--until", type=date.fromisoformat, help="report: incidents recorded before this date")
    encompass.add_argument("--bootstrap")
    add_health_argument(encompass)
    from safebus.password_input import CREDENTIAL_SOURCES_HELP, add_password_arguments

    key_adult = commands.add_parser(
        "key-adult", help="Key Adult and deputy accounts of the school web inbox",
        description=f"Key Adult and deputy accounts of the school web inbox. {CREDENTIAL_SOURCES_HELP}")
    key_adult.add_argument("key_adult_action", choices=["add", "reset-password", "remove", "list"],
                           help="reset-password and remove also end the account's web sessions at once")
    key_adult.add_argument("--school", metavar="URN", help="the setting (add, list)")
    key_adult.add_argument("--staff-id", help="the account's staff id (add, reset-password, remove)")
    key_adult.add_argument("--role", choices=["key-adult", "deputy"], default="key-adult")
    key_adult.add_argument("--name", help="display name (add)")
    key_adult.add_argument("--email", help="where notices go (add)")
    add_password_arguments(key_adult)


def due_by(args: argparse.Namespace) -> int:
    """Print a setting's deadline for an incident recorded at ``--at``."""
    from safebus.app.encompass_wiring import calendars_for

    if args.at.tzinfo is None:
        print("safebus: --at needs a UTC offset (e.g. 2026-11-20T21:30:00+00:00)", file=sys.stderr)
        return 2
    book = calendars_for()
    calendar = book.for_setting(args.urn)
    due = calendar.due_by(args.at)
    print(f"setting      {args.urn} ({calendar.resolution})")
    print(f"due by       {due.astimezone(calendar.tz).isoformat()} ({due.isoformat()})")
    print(f"calendar     {book.version}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an ``encompass`` action."""
    from safebus.app.encompass_wiring import build_monitor_worker, mail_for, open_monitor
    from safebus.consumers.encompass.on_time import REPORT_COLUMNS, on_time_report, report_rows, transfer_report

    if args.action == "monitor":
        from safebus.shutdown import stop_on_signals

        stop = stop_on_signals()  # first: SIGTERM must end the process even while it is still connecting
        mail = mail_for(settings, "monitor")
        worker = build_monitor_worker(settings, mail=mail)
        if mail is not None:
            mail.start(stop)
        else:
            print("safebus: SAFEBUS_SMTP is not set: escalation steps are recorded but nobody is e-mailed "
                  "(set SAFEBUS_SMTP=host:port for the relay)", file=sys.stderr, flush=True)
        with worker_health("monitor", args.health_port) as health:
            worker.run(stop, health=health)
        return 0
    monitor = open_monitor(settings)
    try:
        since = datetime.combine(args.since, time(), UTC) if args.since else None
        until = datetime.combine(args.until, time(), UTC) if args.until else None
        rows = report_rows(on_time_report(monitor, now=utc_now(), since=since, until=until))
        transfers = transfer_report(monitor, now=utc_now())
    finally:
        monitor.close()
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.csv}")
        return 0
    print(" ".join(f"{c:>14}" for c in REPORT_COLUMNS))
    for row in rows:
        print(" ".join(f"{row[c]:>14}" for c in REPORT_COLUMNS))
    print(f"file transfers after moves: {transfers.due} due, {transfers.confirmed_in_time} confirmed in time, "
          f"{transfers.confirmed_late} late, {transfers.overdue_open} overdue and open, "
          f"{transfers.open_in_time} open within time")
    return 0


def inbox_web(settings: Settings, *, host: str, port: int, plain_http: bool, tls: ssl.SSLContext | None = None) -> int:
    """Serve the Key Adults' web inbox (over TLS with `tls`) until interrupted; retry unsent acknowledgements."""
    from safebus.consumers.web.serving import run_app

    inbox = build_school_inbox(settings, secure_cookies=not plain_http)
    stop = threading.Event()

    def retry() -> None:
        while not stop.wait(30):
            inbox.send_pending_acknowledgements()

    threading.Thread(target=retry, name="acknowledgement-outbox", daemon=True).start()
    try:
        run_app(inbox.app(), host=host, port=port, tls=tls)
    finally:
        stop.set()
    return 0


def build_school_inbox(settings: Settings, *, secure_cookies: bool = True) -> SchoolInbox:
    """The web inbox of every school hosted here, acknowledging onto the bus."""
    from safebus.app.encompass_wiring import (
        acknowledgement_publisher,
        due_by_lookup,
        key_adults_for,
        open_monitor,
        transfer_confirmation_publisher,
        transfers_lookup,
    )
    from safebus.app.wiring import inbox_opener
    from safebus.consumers.inbox.key_adults import education_settings
    from safebus.consumers.inbox.store import InboxStore
    from safebus.consumers.inbox.web import SchoolInbox
    from safebus.consumers.web.server_secret import load_or_create_secret

    monitor = open_monitor(settings)
    return SchoolInbox(
        store=InboxStore(settings.inbox_location), opener=inbox_opener(settings), key_adults=key_adults_for(settings),
        settings=education_settings(settings.store.load_directory()), clock=utc_now,
        due_by=due_by_lookup(monitor), on_acknowledged=acknowledgement_publisher(settings, monitor),
        secret=load_or_create_secret(settings.state_dir / "school-inbox" / "web-secret"),
        secure_cookies=secure_cookies, transfers=transfers_lookup(monitor),
        on_transfer_confirmed=transfer_confirmation_publisher(settings), web_state=inbox_web_state(settings),
    )


def inbox_web_state(settings: Settings) -> Path:
    """Where the web inbox keeps its sessions and sign-in throttle (the account commands end sessions there)."""
    return settings.state_dir / "school-inbox"


def key_adult(args: argparse.Namespace, settings: Settings) -> int:
    """Add, reset, remove or list Key Adult accounts (the password is never given on the command line)."""
    from safebus.app.encompass_wiring import key_adults_for
    from safebus.consumers.web.sessions import end_sessions_of
    from safebus.password_input import new_password
    from safebus.schemas.encompass import KeyAdultRole

    accounts = key_adults_for(settings)
    if args.key_adult_action == "list" and not args.school:
        print("safebus: key-adult list needs --school URN", file=sys.stderr)
        return 2
    if args.key_adult_action == "list":
        for person in accounts.for_setting(args.school):
            print(f"{person.staff_id:24} {person.role.value:10} {person.display_name}")
        return 0
    missing = [flag for flag, value in (("--staff-id", args.staff_id), ("--school", args.school),
                                        ("--name", args.name), ("--email", args.email))
               if not value and (args.key_adult_action == "add" or flag == "--staff-id")]
    if missing:
        print(f"safebus: key-adult {args.key_adult_action} needs {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.key_adult_action == "remove":
        accounts.remove(args.staff_id)
        ended = end_sessions_of(inbox_web_state(settings), args.staff_id)
        print(f"remove: {args.staff_id} ({ended} web sessions ended)")
        return 0
    password = new_password(args, what="key adult")
    if args.key_adult_action == "reset-password":
        accounts.reset_password(args.staff_id, password)
        end_sessions_of(inbox_web_state(settings), args.staff_id)
    else:
        accounts.add(args.staff_id, setting_urn=args.school, role=KeyAdultRole(args.role), display_name=args.name,
                     email=args.email, password=password)
    print(f"{args.key_adult_action}: {args.staff_id}")
    return 0

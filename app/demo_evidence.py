"""
The demo's second half: Key Adults acknowledge, e-mail notices arrive, the audit log proves itself.

After the thin path has routed and delivered everything (`safebus.app.demo`), this
part shows what an information-governance officer and a school would see:

- the e-mail notices a loopback SMTP server received (and that none carries a
  child's name);
- one Key Adult per school acknowledging their first alert through the web
  inbox's own acknowledgement path (stored, then published as the school's
  signed event and an audit fact);
- the audit log once the sequencer has appended every decision, delivery,
  acknowledgement and dead letter: its size, latest signed checkpoint, and
  the verifier's verdict;
- the Operation Encompass on-time report (deadlines from the setting
  calendars; escalation steps fall due later, at the next session start).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

from safebus.app.encompass_wiring import open_monitor
from safebus.app.wiring import Settings, open_ledger
from safebus.clock import utc_now
from safebus.consumers.audit.verify import export_lines, verify_export
from safebus.consumers.encompass.on_time import REPORT_COLUMNS, on_time_report, report_rows
from safebus.consumers.inbox.key_adults import synthetic_staff_id
from safebus.schemas.encompass import KeyAdultRole

__all__ = [
    "DEMO_PASSWORD",
    "MailSink",
    "Say",
    "acknowledge_first_alerts",
    "mail_sink",
    "report_evidence",
    "wait_for_evidence",
    "worker_env",
]

Say = Callable[[str], None]
DEMO_PASSWORD = "northdale-demo-2026"  # noqa: S105 - synthetic accounts of a synthetic partnership


@dataclass
class MailSink:
    """What the loopback SMTP server received."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message."""
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def mail_sink() -> Iterator[tuple[MailSink, dict[str, str]]]:
    """A real SMTP server on loopback, and the environment that points the workers at it."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, {"SAFEBUS_SMTP": f"127.0.0.1:{port}", "SAFEBUS_DEMO_PASSWORD": DEMO_PASSWORD,
                     "SAFEBUS_INBOX_URL": "http://127.0.0.1:8080/", "SAFEBUS_CHECKPOINT_SECONDS": "2",
                     "SAFEBUS_MAIL_FROM": "encompass-alerts@northdale.example"}
    finally:
        controller.stop()


def acknowledge_first_alerts(settings: Settings, delivered: set[str], say: Say) -> set[str]:
    """Each school's Key Adult acknowledges their first alert, as the web inbox's button does."""
    from safebus.app.cli_encompass import build_school_inbox

    inbox = build_school_inbox(settings)
    acknowledged: set[str] = set()
    now = utc_now()
    for urn in sorted(inbox.settings):
        alerts = [a for a in inbox.store.alerts(urn, inbox.opener) if a.notification_id in delivered]
        if alerts:
            first = alerts[0]
            staff_id = synthetic_staff_id(urn, KeyAdultRole.KEY_ADULT)
            inbox.store.acknowledge(first.notification_id, urn, staff_id=staff_id, role=KeyAdultRole.KEY_ADULT, at=now)
            acknowledged.add(first.notification_id)
    sent = inbox.send_pending_acknowledgements()
    say(f"· {len(sent)} Key Adults acknowledged their first alert (signed events on the bus, audited)")
    return acknowledged


def wait_for_evidence(settings: Settings, *, decisions: int, delivered: set[str], acknowledged: set[str],
                      timeout_s: float, say: Say) -> bool:
    """Wait until the audit log holds every decision and acknowledgement, and the monitor saw every delivery."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ledger = open_ledger(settings)
        monitor = open_monitor(settings)
        try:
            kinds = [leaf.fact_type for leaf in ledger.leaves()]
            tracked = {t.notification_id: t for t in monitor.all()}
        finally:
            ledger.close()
            monitor.close()
        seen_acks = sum(1 for nid in acknowledged if nid in tracked and tracked[nid].acknowledged_at)
        seen_deliveries = sum(1 for nid in delivered if nid in tracked and tracked[nid].delivered_at)
        if kinds.count("audit.sharing-decision") >= decisions and seen_acks == len(acknowledged) \
                and seen_deliveries == len(delivered) and kinds.count("audit.acknowledged") >= len(acknowledged):
            return True
        time.sleep(1.0)
    say("INCOMPLETE: the audit log or the deadline monitor did not catch up in time")
    return False


def report_evidence(settings: Settings, sink: MailSink, forbidden: list[str], say: Say) -> bool:
    """Print the e-mail notices, the audit log's state and verdict, and the on-time report; True if all hold."""
    say("")
    say("== E-mail notices (a real SMTP server on loopback)")
    leaked = [rcpt for rcpt, raw in sink.messages if any(word.encode() in raw for word in forbidden)]
    addresses = sorted({r for rcpt, _ in sink.messages for r in rcpt})
    subjects = sorted({str(message_from_bytes(raw, policy=policy.default)["Subject"]) for _, raw in sink.messages})
    say(f"{len(sink.messages)} notices to {len(addresses)} Key Adults and deputies; subjects: {subjects}")
    say(f"personal data in any notice: {'YES: ' + str(leaked[:3]) if leaked else 'none'}")
    say("")
    say("== The audit log (RFC 9162 Merkle tree; safebus audit verify|export|prove)")
    ledger = open_ledger(settings)
    try:
        kinds: dict[str, int] = {}
        for leaf in ledger.leaves():
            kinds[leaf.fact_type] = kinds.get(leaf.fact_type, 0) + 1
        for kind, count in sorted(kinds.items()):
            say(f"{count:5d} x {kind}")
        report = verify_export(list(export_lines(ledger, now=utc_now())), pinned=ledger.identity)
        latest = ledger.latest_checkpoint()
        say(f"{ledger.size} leaves; latest signed checkpoint: size {latest.size if latest else 0}, "
            f"root {latest.root.hex() if latest else '-'}")
        say(f"verified: {'yes' if report.ok else 'NO: ' + '; '.join(str(p) for p in report.problems[:3])}")
        say(f"verifier key (pin it): {ledger.identity.vkey}")
    finally:
        ledger.close()
    say("")
    say("== Operation Encompass: on time? (due by the setting's next session start; safebus encompass report)")
    monitor = open_monitor(settings)
    try:
        rows = report_rows(on_time_report(monitor, now=utc_now()))
        tracked = monitor.all()
    finally:
        monitor.close()
    say(" ".join(f"{c[:12]:>12}" for c in REPORT_COLUMNS))
    for row in rows:
        say(" ".join(f"{row[c][:12]:>12}" for c in REPORT_COLUMNS))
    if tracked:
        due = sorted({t.due_by.isoformat() for t in tracked if t.desk == "setting"})
        say(f"deadlines: {', '.join(due[:4])}{' …' if len(due) > 4 else ''} — unacknowledged alerts escalate to "
            f"deputies 45 min before, then the LA officer (safebus encompass monitor)")
    return report.ok and not leaked and bool(sink.messages)


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    """The demo workers' environment with the mail and checkpoint settings."""
    return {**os.environ, **extra}

"""The sender: while the relay is away nothing is lost, and when it is back every notice arrives exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from safebus.consumers.mail.outbox import MailOutbox
from safebus.consumers.mail.relay import SmtpRelay
from safebus.consumers.mail.sender import OutboxSender, SendReport
from tests.mail_relay import Recorder, free_port, start_relay

START = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _notice(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "encompass-alerts@northdale.example"
    message["To"] = f"dsl-{n}@school-90010{n}.example"
    message["Subject"] = "Operation Encompass: a new alert is waiting"
    message["Message-ID"] = f"<notice-{n}@northdale.example>"
    message.set_content("A new Operation Encompass alert is waiting.\n")
    return message


def test_a_relay_stopped_mid_flow_delays_notices_and_each_arrives_once_when_it_returns(tmp_path: Path) -> None:
    """Two go, the relay stops, three wait (retried with backoff, none lost), it returns: all five, once each."""
    clock = Clock()
    outbox = MailOutbox(tmp_path / "outbox.sqlite")
    port = free_port()
    sender = OutboxSender(outbox, SmtpRelay(host="127.0.0.1", port=port, timeout_s=5), clock=clock)
    recorder = Recorder()
    relay = start_relay(recorder, port)
    for n in (1, 2):
        outbox.put(f"notice/{n}", _notice(n), now=clock())
    assert sender.send_due().sent == 2

    relay.stop()
    for n in (3, 4, 5):
        outbox.put(f"notice/{n}", _notice(n), now=clock())
    assert sender.send_due().deferred == 3
    clock.now += timedelta(seconds=2)
    assert sender.send_due().deferred == 0, "not retried before its delay"
    clock.now += timedelta(seconds=5)
    assert sender.send_due().deferred == 3, "retried after it, still away"
    assert outbox.counts().pending == 3

    relay = start_relay(recorder, port)
    try:
        clock.now += timedelta(minutes=1)
        assert sender.send_due().sent == 3
        clock.now += timedelta(hours=1)
        assert sender.send_due().sent == 0, "a sent message is never sent again"
    finally:
        relay.stop()
    ids = [r.message["Message-ID"] for r in recorder.received]
    assert sorted(ids) == [f"<notice-{n}@northdale.example>" for n in range(1, 6)]
    assert (outbox.counts().pending, outbox.counts().sent) == (0, 5)


def test_a_temporary_refusal_is_retried_and_a_permanent_one_is_not(tmp_path: Path) -> None:
    """A 4xx (greylisting) waits and goes later; a 5xx (no such mailbox) is kept as refused."""
    clock = Clock()
    outbox = MailOutbox(tmp_path / "outbox.sqlite")
    port = free_port()
    recorder = Recorder(refuse={"dsl-1@school-900101.example"}, defer={"dsl-2@school-900102.example"})
    relay = start_relay(recorder, port)
    try:
        sender = OutboxSender(outbox, SmtpRelay(host="127.0.0.1", port=port, timeout_s=5), clock=clock)
        outbox.put("notice/1", _notice(1), now=clock())
        outbox.put("notice/2", _notice(2), now=clock())
        report = sender.send_due()
        assert (report.sent, report.refused, report.deferred) == (0, 1, 1)
        clock.now += timedelta(minutes=1)
        assert sender.send_due().sent == 1, "the greylisted notice goes on its retry"
        clock.now += timedelta(hours=1)
        assert sender.send_due() == SendReport(), "the refused one is not tried again"
    finally:
        relay.stop()
    assert [r.rcpt_tos for r in recorder.received] == [["dsl-2@school-900102.example"]]
    assert outbox.counts().refused == 1

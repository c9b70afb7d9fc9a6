"""The outbox: a message put in once is kept until it is sent or refused, and comes back with the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from safebus.consumers.mail.outbox import MailOutbox, RetryPolicy

NOW = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)


def _message(to: str = "dsl@school-900101.example") -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Operation Encompass: a new alert is waiting"
    message["Message-ID"] = "<fixed@northdale.example>"
    message.set_content("A new Operation Encompass alert is waiting.\n")
    return message


def test_the_same_key_is_kept_once(tmp_path: Path) -> None:
    """A batch redelivered after a crash queues its notices again: the outbox holds each once."""
    outbox = MailOutbox(tmp_path / "o.sqlite")
    assert outbox.put("alert-notice/900101/dsl/1", _message(), now=NOW) is True
    assert outbox.put("alert-notice/900101/dsl/1", _message(), now=NOW) is False
    assert [p.key for p in outbox.due(NOW)] == ["alert-notice/900101/dsl/1"]


def test_a_message_comes_back_as_it_went_in_even_after_a_restart(tmp_path: Path) -> None:
    """Same bytes, same Message-ID: a mail client that saw a copy before can tell it is the same."""
    MailOutbox(tmp_path / "o.sqlite").put("k", _message(), now=NOW)
    [pending] = MailOutbox(tmp_path / "o.sqlite").due(NOW)
    assert pending.message["Message-ID"] == "<fixed@northdale.example>"
    assert bytes(pending.message) == bytes(_message())


def test_a_failed_attempt_waits_longer_each_time_up_to_the_longest_delay(tmp_path: Path) -> None:
    """5 s, 10 s, 20 s ... never more than the policy's longest: the relay is not hammered while it is down."""
    outbox = MailOutbox(tmp_path / "o.sqlite", retry=RetryPolicy(first=timedelta(seconds=5),
                                                                 longest=timedelta(seconds=30)))
    outbox.put("k", _message(), now=NOW)
    waits = []
    now = NOW
    for _ in range(5):
        retry_at = outbox.failed("k", now=now, reason="relay unavailable")
        waits.append((retry_at - now).total_seconds())
        assert outbox.due(retry_at - timedelta(microseconds=1)) == [], "not before its time"
        assert [p.attempts for p in outbox.due(retry_at)] == [len(waits)]
        now = retry_at
    assert waits == [5, 10, 20, 30, 30]


def test_sent_and_refused_messages_leave_the_pending_set_and_are_counted(tmp_path: Path) -> None:
    """The ops team sees how many wait, went and were refused; nothing is deleted."""
    outbox = MailOutbox(tmp_path / "o.sqlite")
    for key in ("a", "b", "c"):
        outbox.put(key, _message(), now=NOW)
    outbox.sent("a", now=NOW)
    outbox.refused("b", now=NOW, reason="recipient refused (550)")
    outbox.failed("c", now=NOW, reason="relay unavailable")
    counts = outbox.counts()
    assert (counts.pending, counts.sent, counts.refused) == (1, 1, 1)
    assert [p.key for p in outbox.due(NOW + timedelta(days=1))] == ["c"]
    assert outbox.next_due() == NOW + RetryPolicy().delay(1)


def test_times_in_any_zone_order_correctly(tmp_path: Path) -> None:
    """A clock that reports another zone's time (here +10:00) still finds what is due in UTC terms."""
    outbox = MailOutbox(tmp_path / "o.sqlite")
    sydney = NOW.astimezone(ZoneInfo("Australia/Sydney"))
    outbox.put("k", _message(), now=sydney + timedelta(minutes=1))
    assert outbox.due(NOW) == []
    assert len(outbox.due(NOW + timedelta(minutes=1))) == 1

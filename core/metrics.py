"""
The bus's Prometheus metrics, defined in one place so every worker reports the same names.

Metrics live in prometheus-client's process registry, the library's own idiom:
a worker is one process, and its health endpoint (`safebus.health`) serves
that registry at ``/metrics``. Labels carry topics, reasons and outcomes,
never a person, an address or an event's content.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from safebus.records import DLQ_REASON, Output

__all__ = [
    "AUDIT_CHECKPOINT_AGE",
    "AUDIT_LEDGER_LEAVES",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "ESCALATION_STEPS",
    "GATEWAY_ACCEPTED",
    "GATEWAY_REFUSED",
    "MAIL_OUTBOX",
    "RECORDS_IN",
    "SHARES_DELIVERED",
    "count_dead_letters",
]

RECORDS_IN = Counter("safebus_records_in", "Records a worker read from the bus.", ["topic"])
DEAD_LETTERS = Counter("safebus_dead_letters", "Dead letters a worker wrote, by reason.", ["reason"])
SHARES_DELIVERED = Counter("safebus_shares_delivered", "Shares newly stored for their recipient.", ["what"])
CONSUMER_LAG = Gauge("safebus_consumer_lag", "Records on the bus the worker has not read yet, per topic.", ["topic"])
MAIL_OUTBOX = Gauge("safebus_mail_outbox", "E-mail messages in the worker's outbox, by state.", ["state"])
AUDIT_LEDGER_LEAVES = Gauge("safebus_audit_ledger_leaves", "Leaves in the sequencer's Merkle audit log.")
AUDIT_CHECKPOINT_AGE = Gauge("safebus_audit_checkpoint_age_seconds",
                             "Seconds since the sequencer signed its last checkpoint (auditors can pin only what "
                             "a checkpoint covers, so a growing age is an alert).")
GATEWAY_ACCEPTED = Counter("safebus_gateway_events_accepted",
                           "Events the HTTP gateway published onto the bus (broker-confirmed), per ingress topic: the "
                           "records that came in through it.", ["topic"])
GATEWAY_REFUSED = Counter("safebus_gateway_requests_refused",
                          "Requests the HTTP gateway refused, by status and reason code: its dead letters, which are "
                          "answered to the caller and never reach the bus.", ["status", "reason"])
ESCALATION_STEPS = Counter("safebus_escalation_steps", "Operation Encompass escalation steps taken, by step.",
                           ["step"])


def count_dead_letters(outputs: Iterable[Output]) -> int:
    """
    Count the dead letters among `outputs` (the ones carrying a reason header) in `DEAD_LETTERS`; return how many.

    Called once the outputs are durable, by every worker that writes dead letters, so the
    reason label is read one way everywhere (truncated: a label is not a place for detail).
    """
    counted = 0
    for output in outputs:
        reason = dict(output.headers).get(DLQ_REASON)
        if reason is not None:
            DEAD_LETTERS.labels(reason=reason.decode("utf-8", "replace")[:64]).inc()
            counted += 1
    return counted

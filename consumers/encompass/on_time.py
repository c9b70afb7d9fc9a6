"""
The on-time report: per setting and for the partnership, how many notifications arrived and were read in time.

Apart from the monitor (`safebus.consumers.encompass.monitor`), which tracks
and escalates, because these are figures computed from what it tracked, for
the command line and the demo's evidence; they change nothing.  The police's
clock (shared before the setting's next school day after the incident) is
counted beside the school's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from safebus.consumers.encompass.monitor import EncompassMonitor, Tracked
from safebus.schemas.audit import EscalationStep

__all__ = ["REPORT_COLUMNS", "OnTimeLine", "TransferLine", "on_time_report", "report_rows", "transfer_report"]


@dataclass(frozen=True, kw_only=True)
class OnTimeLine:
    """The on-time figures for one setting (or the partnership, with `setting_urn` None)."""

    setting_urn: str | None
    sent: int
    delivered: int
    delivered_before_due: int
    acknowledged: int
    acknowledged_before_due: int
    median_minutes_to_acknowledge: float | None
    escalations: int
    unresolved: int
    shared_on_time: int = 0
    """Shared before the setting's next school day after the incident (the police's clock)."""
    shared_late: int = 0
    """Shared after it: the police passed it on late, whatever the school did."""
    median_minutes_shared_late: float | None = None

    @property
    def on_time_rate(self) -> float | None:
        """Share of notifications acknowledged before ``due_by``."""
        return self.acknowledged_before_due / self.sent if self.sent else None


def on_time_report(monitor: EncompassMonitor, *, now: datetime, since: datetime | None = None,
                   until: datetime | None = None) -> list[OnTimeLine]:
    """Per-setting lines (by URN) and a last partnership line, for notifications recorded in [since, until)."""
    chosen = [t for t in monitor.all() if t.desk == "setting"
              and (since is None or t.recorded_at >= since) and (until is None or t.recorded_at < until)]
    by_setting: dict[str | None, list[Tracked]] = {}
    for tracked in chosen:
        by_setting.setdefault(tracked.setting_urn, []).append(tracked)
    escalations = {t.notification_id: len([s for s in monitor.fired(t.notification_id)
                                           if s is not EscalationStep.RESURFACED]) for t in chosen}
    lines = [_line(urn, group, escalations, now) for urn, group in sorted(by_setting.items(), key=lambda i: str(i[0]))]
    lines.append(_line(None, chosen, escalations, now))
    return lines


def _line(urn: str | None, group: list[Tracked], escalations: dict[str, int], now: datetime) -> OnTimeLine:
    minutes = [(t.acknowledged_at - (t.delivered_at or t.recorded_at)) / timedelta(minutes=1)
               for t in group if t.acknowledged_at is not None]
    lateness = [t.shared_late_minutes for t in group if t.shared_late_minutes is not None]
    late = [m for m in lateness if m > 0]
    return OnTimeLine(
        setting_urn=urn, sent=len(group), delivered=sum(t.delivered_at is not None for t in group),
        delivered_before_due=sum(t.delivered_at is not None and t.delivered_at <= t.due_by for t in group),
        acknowledged=len(minutes), acknowledged_before_due=sum(t.acknowledged_on_time for t in group),
        median_minutes_to_acknowledge=statistics.median(minutes) if minutes else None,
        escalations=sum(escalations.get(t.notification_id, 0) for t in group),
        unresolved=sum(t.acknowledged_at is None and t.due_by < now for t in group),
        shared_on_time=len(lateness) - len(late), shared_late=len(late),
        median_minutes_shared_late=statistics.median(late) if late else None,
    )


REPORT_COLUMNS = ("setting_urn", "sent", "delivered", "delivered_before_due", "acknowledged",
                  "acknowledged_before_due", "on_time_rate", "median_minutes_to_acknowledge", "escalations",
                  "unresolved", "shared_on_time", "shared_late", "median_minutes_shared_late")


def report_rows(lines: list[OnTimeLine]) -> list[dict[str, str]]:
    """The report as rows of text (for CSV and the terminal)."""
    return [{
        "setting_urn": line.setting_urn or "partnership", "sent": str(line.sent), "delivered": str(line.delivered),
        "delivered_before_due": str(line.delivered_before_due), "acknowledged": str(line.acknowledged),
        "acknowledged_before_due": str(line.acknowledged_before_due),
        "on_time_rate": f"{line.on_time_rate:.3f}" if line.on_time_rate is not None else "",
        "median_minutes_to_acknowledge": f"{line.median_minutes_to_acknowledge:.1f}"
        if line.median_minutes_to_acknowledge is not None else "",
        "escalations": str(line.escalations), "unresolved": str(line.unresolved),
        "shared_on_time": str(line.shared_on_time), "shared_late": str(line.shared_late),
        "median_minutes_shared_late": f"{line.median_minutes_shared_late:.0f}"
        if line.median_minutes_shared_late is not None else "",
    } for line in lines]


@dataclass(frozen=True, kw_only=True)
class TransferLine:
    """Child-protection file transfers after moves: how many were due, done in time, late, still open."""

    due: int
    confirmed_in_time: int
    confirmed_late: int
    overdue_open: int
    open_in_time: int


def transfer_report(monitor: EncompassMonitor, *, now: datetime) -> TransferLine:
    """The partnership's file-transfer figures."""
    transfers = [t for t in monitor.all() if t.desk == "transfer"]
    return TransferLine(
        due=len(transfers), confirmed_in_time=sum(t.acknowledged_on_time for t in transfers),
        confirmed_late=sum(t.acknowledged_at is not None and not t.acknowledged_on_time for t in transfers),
        overdue_open=sum(t.acknowledged_at is None and t.due_by < now for t in transfers),
        open_in_time=sum(t.acknowledged_at is None and t.due_by >= now for t in transfers),
    )

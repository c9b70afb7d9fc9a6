"""
Audit figures as charts: a month's statistics and the flows between agencies, as plain accessible SVG.

Apart from the exports (`safebus.consumers.audit.exports`) because drawing is
its own job: the SVG is written here, with ``<title>``, ``<desc>`` and text
labels carrying every number, so a screen reader gets the figures and the
page needs no script or plotting library.  All text is XML-escaped.  Rates
and durations read as they do in the CSV export.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from safebus.consumers.audit.exports import hours_minutes_seconds, on_time_rate
from safebus.consumers.audit.projection import Flow, MonthlyStatistics

__all__ = ["flows_svg", "statistics_svg"]


def _x(text: object) -> str:
    """Text escaped for SVG content and double-quoted attributes."""
    return escape(str(text), {'"': "&quot;"})


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


_SVG_NS = "http://www.w3.org/2000/svg"
_FONT = 'font-family="Arial, Helvetica, sans-serif"'


def statistics_svg(stats: MonthlyStatistics, *, id_prefix: str = "stats") -> str:
    """
    The month's figures as an accessible horizontal bar chart (standalone SVG; embeddable in HTML).

    Every bar has a text label and its value; ``<title>`` and ``<desc>`` say
    what the chart shows and list every figure.
    """
    sections: list[tuple[str, list[tuple[str, int, str]]]] = [
        ("Operation Encompass notifications", [
            ("Sent", stats.notifications_sent, ""), ("Delivered", stats.delivered, ""),
            ("Delivered on time", stats.delivered_on_time.on_time, f"rate {on_time_rate(stats.delivered_on_time)}"),
            ("Acknowledged", stats.acknowledged, ""),
            ("Acknowledged on time", stats.acknowledged_on_time.on_time,
             f"rate {on_time_rate(stats.acknowledged_on_time)}"),
            ("Shared by the police on time", stats.police_shared_on_time.on_time,
             f"rate {on_time_rate(stats.police_shared_on_time)}"),
            ("Shared by the police late", stats.police_shared_on_time.late, ""),
        ]),
        ("Shares withheld, by reason", [(r.label, r.count, r.reason) for r in stats.withheld_by_reason]),
        ("Dead letters, by reason", [(r.reason, r.count, "") for r in stats.dead_letters_by_reason]),
    ]
    title = f"Audit statistics for {stats.month}"
    summary = [f"{stats.notifications_sent} Operation Encompass notifications sent, {stats.delivered} delivered "
               f"({stats.delivered_on_time.on_time} on time, on-time rate {on_time_rate(stats.delivered_on_time)}), "
               f"{stats.acknowledged} acknowledged ({stats.acknowledged_on_time.on_time} on time, on-time rate "
               f"{on_time_rate(stats.acknowledged_on_time)}), median time to acknowledge "
               f"{hours_minutes_seconds(stats.median_time_to_acknowledge)}.",
               f"The police shared {stats.police_shared_on_time.on_time} on time and "
               f"{stats.police_shared_on_time.late} late (unknown for {stats.police_shared_on_time.unknown}).",
               f"{len(stats.state_conflicts)} state conflicts."]
    summary.append(f"{stats.withheld} shares withheld" + (": " + "; ".join(
        f"{r.label} {r.count}" for r in stats.withheld_by_reason) if stats.withheld_by_reason else "") + ".")
    summary.append(f"{stats.dead_letters} dead letters" + (": " + "; ".join(
        f"{r.reason} {r.count}" for r in stats.dead_letters_by_reason) if stats.dead_letters_by_reason else "") + ".")
    largest = max([1, *(n for _, bars in sections for _, n, _ in bars)])
    width, label_width, bar_width, row, top = 760, 300, 360, 26, 56
    parts: list[str] = []
    y = top
    for heading, bars in sections:
        parts.append(f'<text x="10" y="{y + 14}" font-size="15" font-weight="bold" fill="#0b0c0c">{_x(heading)}</text>')
        y += row
        if not bars:
            parts.append(f'<text x="20" y="{y + 14}" font-size="13" fill="#505a5f">None this month</text>')
            y += row
        for label, count, note in bars:
            length = round(bar_width * count / largest)
            tooltip = _x(f"{label}: {count}" + (f" ({note})" if note else ""))
            parts.append(
                f'<g><title>{tooltip}</title>'
                f'<text x="20" y="{y + 14}" font-size="13" fill="#0b0c0c">{_x(_short(label, 40))}</text>'
                f'<rect x="{label_width}" y="{y}" width="{length}" height="18" fill="#1d70b8"/>'
                f'<text x="{label_width + length + 6}" y="{y + 14}" font-size="13" fill="#0b0c0c">{count}</text></g>')
            y += row
        y += 8
    height = y + 10
    return (
        f'<svg xmlns="{_SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" {_FONT}>'
        f'<title id="{id_prefix}-title">{_x(title)}</title>'
        f'<desc id="{id_prefix}-desc">{_x(" ".join(summary))}</desc>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="10" y="28" font-size="18" font-weight="bold" fill="#0b0c0c">{_x(title)}</text>'
        + "".join(parts) + "</svg>\n"
    )


_OUTCOME_COLOURS = {"shared": "#00703c", "deferred": "#f47738", "escalated": "#d4351c", "withheld": "#6f777b"}


def _target(flow: Flow) -> str:
    if flow.recipient:
        return flow.recipient
    return f"not shared ({flow.recipient_kind})" if flow.recipient_kind else "not shared"


def flows_svg(flows: Sequence[Flow], *, id_prefix: str = "flows", caption: str = "Flows between agencies") -> str:
    """
    Decisions between producing agencies (left) and recipients (right) as an accessible SVG diagram.

    One line per (agency, recipient, outcome), as thick as its count and
    labelled with it just before the recipient; withheld decisions lead to a "not shared" node for the
    recipient kind.  ``<desc>`` lists every flow in words.
    """
    edges: dict[tuple[str, str, str], int] = {}
    for flow in flows:
        key = (flow.agency, _target(flow), flow.outcome)
        edges[key] = edges.get(key, 0) + flow.count
    sources = sorted({a for a, _, _ in edges})
    targets = sorted({t for _, t, _ in edges}, key=lambda t: (t.startswith("not shared"), t))
    spacing, top, width = 52, 90, 780
    height = top + max(len(sources), len(targets), 1) * spacing + 20
    ys = {name: top + i * spacing for i, name in enumerate(sources)}
    yt = {name: top + i * spacing for i, name in enumerate(targets)}
    largest = max([1, *edges.values()])
    lines: list[str] = []
    into: dict[str, int] = {}
    for (source, target, outcome), count in sorted(edges.items()):
        offset = into.get(target, 0)  # several lines into one node: spread them, and stack their labels
        into[target] = offset + 1
        y1, y2 = ys[source] + 18, yt[target] + 12 + (offset % 3) * 6
        colour = _OUTCOME_COLOURS.get(outcome, "#4c2c92")
        stroke = 1.5 + 8 * count / largest
        dash = ' stroke-dasharray="6 4"' if outcome == "withheld" else ""
        label = f"{count} {outcome}"
        lines.append(
            f'<g><title>{_x(f"{source} to {target}: {label}")}</title>'
            f'<path d="M 250 {y1} C 390 {y1}, 390 {y2}, 530 {y2}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke:.1f}" stroke-opacity="0.8"{dash}/>'
            f'<text x="524" y="{yt[target] - 4 - offset * 13}" font-size="12" text-anchor="end" fill="#0b0c0c" '
            f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{_x(label)}</text></g>')
    nodes: list[str] = []
    for name, y in ys.items():
        nodes.append(f'<g><title>{_x(name)}</title><rect x="10" y="{y}" width="240" height="36" rx="4" fill="#f3f2f1" '
                     f'stroke="#0b0c0c"/><text x="20" y="{y + 23}" font-size="13" fill="#0b0c0c">'
                     f'{_x(_short(name, 32))}</text></g>')
    for name, y in yt.items():
        nodes.append(f'<g><title>{_x(name)}</title><rect x="530" y="{y}" width="240" height="36" rx="4" fill="#f3f2f1" '
                     f'stroke="#0b0c0c"/><text x="540" y="{y + 23}" font-size="13" fill="#0b0c0c">'
                     f'{_x(_short(name, 32))}</text></g>')
    described = "; ".join(f"{s} to {t}: {n} {o}" for (s, t, o), n in sorted(edges.items())) or "no decisions"
    return (
        f'<svg xmlns="{_SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" {_FONT}>'
        f'<title id="{id_prefix}-title">{_x(caption)}</title>'
        f'<desc id="{id_prefix}-desc">{_x("Sharing decisions from producing agencies to recipients. " + described)}'
        f'</desc><rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="10" y="28" font-size="16" font-weight="bold" fill="#0b0c0c">From agency</text>'
        f'<text x="530" y="28" font-size="16" font-weight="bold" fill="#0b0c0c">To recipient</text>'
        f'<text x="10" y="50" font-size="12" fill="#505a5f">Line width shows the number of decisions; dashed lines '
        f'were withheld.</text>'
        + "".join(lines) + "".join(nodes) + "</svg>\n"
    )

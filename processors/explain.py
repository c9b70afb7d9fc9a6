"""
Explaining decisions to an information-governance officer.

For a sample event, `explain_event` routes it through the agreements (with
fresh state unless given) and renders every decision with the agreement,
version, clause, lawful basis and consent status behind it, and every rule
tried on the way with each condition's actual value — so a reader can see not
only what was decided but why the earlier clauses did not apply.
"""

from __future__ import annotations

from datetime import datetime

from safebus.processors.engine import Explanation, SharingEngine, reference_of
from safebus.schemas._base import Event

__all__ = ["explain_event", "render"]


def render(explanation: Explanation) -> list[str]:
    """The lines describing one decision."""
    d, subject = explanation.decision, explanation.subject
    who = {"child": f"child {subject.child.first_name if subject.child else ''}".strip(), "victim": "the victim",
           "event": "the event"}[subject.kind]
    target = f" -> {d.recipient}" if d.recipient else ""
    lines = [f"{d.agreement_id} v{d.agreement_version} · {who}: {d.outcome.value.upper()}{target}  (clause {d.clause})",
             f"    why: {d.reason}"]
    if d.fields_released:
        lines.append(f"    fields released: {', '.join(d.fields_released)}")
    purpose = f" (for {d.consent_purpose})" if d.consent_purpose else ""
    lines.append(f"    lawful basis: {'; '.join(d.lawful_basis)} · consent: {d.consent_status.value}{purpose}")
    for trial in explanation.trials:
        mark = "matched" if trial.matched else "did not apply"
        conditions = ", ".join(f"{'✓' if ok else '✗'} {c} (is {value!r})" for c, value, ok in trial.checks) or "always"
        lines.append(f"    tried clause {trial.rule.clause} {trial.rule.name}: {mark} — {conditions}")
    return lines


def explain_event(engine: SharingEngine, incident: Event, *, now: datetime) -> list[str]:
    """Every decision about `incident` (a police incident or a case event), explained."""
    result = engine.route(incident, decided_at=now)
    lines = [f"{incident.event_type} {incident.event_id} ({reference_of(incident)}): "
             f"{len(result.decisions)} decisions, {len(result.shares)} shares"]
    for explanation in result.explanations:
        lines.append("")
        lines.extend(render(explanation))
    return lines

"""
``safebus demo``: the whole thin path, end to end, on a real broker.

It starts (or uses) a broker, applies the topics, starts the router and the
school-inbox worker as separate processes, publishes a synthetic batch that
includes every awkward case (no known school, a school not in the directory,
adults-only households, young adults, corrupted events), waits until every
event is accounted for, and prints what each school received, what was
withheld and why, and the dead letters.  Exit status 0 means the flow completed
and every corrupted event was dead-lettered with the expected reason.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from safebus.app.demo_evidence import (
    DEMO_PASSWORD,
    acknowledge_first_alerts,
    mail_sink,
    report_evidence,
    wait_for_evidence,
    worker_env,
)
from safebus.app.queue_wiring import open_queue_store
from safebus.app.wiring import Settings, build_police_publisher, inbox_opener, tokeniser_for, topics_for
from safebus.clock import utc_now
from safebus.consumers.audit.log import read_facts
from safebus.consumers.inbox.store import InboxStore
from safebus.consumers.queues.store import QueueStore
from safebus.deploy.broker import LocalBroker
from safebus.deploy.supervision import WORKERS
from safebus.deploy.topics_admin import apply_topics
from safebus.directory import AgencyKind
from safebus.kafka_io import read_topic
from safebus.paths import cache_dir
from safebus.processors.agreements import load_agreements
from safebus.processors.engine import SharingEngine
from safebus.producers.synthetic import IncidentFactory, corrupted_records, create_partnership
from safebus.records import DLQ_DETAIL, DLQ_ORIGIN_KEY, DLQ_ORIGIN_OFFSET, DLQ_REASON, DLQ_STAGE, Record
from safebus.schemas.decision import Outcome, SharingDecision
from safebus.schemas.police import DomesticAbuseIncident
from safebus.topics import TopicNames

__all__ = ["Expectation", "Progress", "Say", "run_demo"]


@dataclass
class Progress:
    """What has been seen so far of one demo run."""

    decisions: dict[str, SharingDecision] = field(default_factory=dict)
    dead_letters: dict[bytes, Record] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)


@dataclass(frozen=True, kw_only=True)
class Expectation:
    """What a complete run must show."""

    event_ids: frozenset[str]
    decisions_per_event: dict[str, int]
    corrupted: dict[bytes, str]  # record key -> expected dead-letter reason

    @property
    def decision_total(self) -> int:
        """Decisions the run must produce."""
        return sum(self.decisions_per_event.values())


def run_demo(
    *, state_dir: Path, bootstrap: str | None, names: TopicNames, incidents: int, seed: int | None,
    timeout_s: float, out: TextIO,
) -> int:
    """Run the demo and return the process exit status."""
    say = _printer(out)
    say("safebus demo: a synthetic partnership, end to end on a real Apache Kafka broker")
    started_broker = bootstrap is None
    if bootstrap is None:
        say("· starting the local Kafka broker (the first run fetches its jars with Maven)…")
        status = LocalBroker(state_dir=state_dir, cache_dir=cache_dir()).up()
        bootstrap = status.bootstrap
        assert bootstrap is not None
    say(f"· broker at {bootstrap}")
    settings = Settings(state_dir=state_dir, bootstrap=bootstrap, names=names)
    if not settings.store.exists():
        create_partnership(settings.store)
        say("· created the synthetic Northdale partnership: 1 police force, 6 schools, keys for each")
    directory = settings.store.load_directory()
    changes = apply_topics(bootstrap, topics_for(settings))
    say(f"· topics applied: {Counter(c.action for c in changes)}")

    with mail_sink() as (sink, mail_env):
        processes = _start_workers(settings, say, mail_env)
        try:
            expectation, batch = _publish(settings, incidents=incidents, seed=seed, say=say)
            progress = _wait(settings, expectation, timeout_s=timeout_s, say=say)
            complete = _is_complete(progress, expectation)
            if complete:
                delivered = _shares(progress) & progress.delivered
                acknowledged = acknowledge_first_alerts(settings, delivered, say)
                complete = wait_for_evidence(settings, decisions=len(progress.decisions), delivered=delivered,
                                             acknowledged=acknowledged, timeout_s=timeout_s, say=say)
        finally:
            _stop_workers(processes)
        _report(settings, directory.partnership, progress, expectation, batch, say)
        forbidden = sorted({text for incident in batch.values() for child in incident.children
                            for text in (f"{child.first_name} {child.surname}", child.surname.upper(),
                                         str(child.date_of_birth))}
                           | {i.police_reference for i in batch.values()})
        complete = report_evidence(settings, sink, forbidden, say) and complete
    if not complete:
        say(f"INCOMPLETE: the flow did not finish within {timeout_s:.0f}s; worker logs are in {state_dir / 'logs'}")
        return 1
    say("complete: every event was routed, every share delivered or queued, every corrupted event dead-lettered, "
        "the audit log verified")
    if started_broker:
        say("the broker keeps running: try 'safebus inbox show --school 900101', 'safebus inbox web --plain-http' "
            f"(sign in as 900101-ka / {DEMO_PASSWORD}), 'safebus audit verify'; stop it with 'safebus broker down'")
    return 0


Say = Callable[[str], None]


def _printer(out: TextIO) -> Say:
    def say(line: str) -> None:
        print(line, file=out, flush=True)
    return say


def _start_workers(settings: Settings, say: Say, extra_env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**worker_env(extra_env), "SAFEBUS_HOME": str(settings.state_dir),
           "SAFEBUS_TOPIC_PREFIX": settings.names.prefix}
    processes = []
    # The table `safebus up` supervises (docs/adr/0012); the demo has no gateway credential, so no gateway.
    for worker in (w for w in WORKERS if w.name != "gateway"):
        log = (logs / f"{worker.name}.log").open("ab")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "safebus", *worker.argv, "--bootstrap", settings.bootstrap],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        ))
        log.close()
    say("· started the router (Faust worker), the school-inbox, referral-queue, audit-sequencer and deadline-monitor "
        "workers")
    return processes


def _stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _publish(
    settings: Settings, *, incidents: int, seed: int | None, say: Say
) -> tuple[Expectation, dict[str, DomesticAbuseIncident]]:
    directory = settings.store.load_directory()
    publisher = build_police_publisher(settings)
    rng = random.Random(seed)
    factory = IncidentFactory(rng, now=utc_now())
    batch = [factory.incident() for _ in range(incidents)]
    event_ids = publisher.publish(batch)
    corrupted = corrupted_records(publisher, factory,
                                  school=directory.of_kind(AgencyKind.SCHOOL)[0].public_keys())
    publisher.publish_raw(list(corrupted.values()))
    say(f"· published {len(batch)} synthetic incidents and {len(corrupted)} corrupted events")
    # One decision per (agreement, subject): the count depends on the agreements, never on state.
    counter = SharingEngine(agreements=load_agreements(), directory=directory,
                            tokeniser=tokeniser_for(settings.state_dir))
    expectation = Expectation(
        event_ids=frozenset(event_ids),
        decisions_per_event={eid: len(counter.route(inc, decided_at=utc_now()).decisions)
                             for eid, inc in zip(event_ids, batch, strict=True)},
        corrupted={output.key: reason for reason, output in corrupted.items()},
    )
    return expectation, dict(zip(event_ids, batch, strict=True))


def _poll(settings: Settings, expectation: Expectation, progress: Progress, inbox: InboxStore,
          queues: QueueStore) -> None:
    for decision in read_facts(settings.bootstrap, settings.names.audit, SharingDecision).values():
        if decision.about_event_id in expectation.event_ids:
            progress.decisions[decision.decision_id] = decision
    for record in read_topic(settings.bootstrap, settings.names.deadletter):
        origin_key = record.headers.get(DLQ_ORIGIN_KEY)
        if origin_key in expectation.corrupted:
            progress.dead_letters[origin_key] = record
    wanted = [d.output_id for d in progress.decisions.values() if d.output_id]
    progress.delivered = set(inbox.received_at(wanted))
    progress.queued = {rid for d in _referrals(progress) if d.recipient
                       for rid in queues.referral_ids(d.recipient) if rid == d.output_id}


def _shares(progress: Progress) -> set[str]:
    """School alerts decided so far (referrals to other recipients wait in their queues)."""
    return {d.output_id for d in progress.decisions.values()
            if d.outcome is Outcome.SHARED and d.recipient_kind == "school" and d.output_id}


def _referrals(progress: Progress) -> list[SharingDecision]:
    return [d for d in progress.decisions.values()
            if d.outcome is not Outcome.WITHHELD and d.recipient_kind != "school" and d.output_id]


def _is_complete(progress: Progress, expectation: Expectation) -> bool:
    return (
        len(progress.decisions) == expectation.decision_total
        and _shares(progress) <= progress.delivered
        and {d.output_id for d in _referrals(progress)} <= progress.queued
        and len(progress.dead_letters) == len(expectation.corrupted)
        and all(rec.header(DLQ_REASON) == expectation.corrupted[key] for key, rec in progress.dead_letters.items())
    )


def _wait(settings: Settings, expectation: Expectation, *, timeout_s: float, say: Say) -> Progress:
    progress = Progress()
    inbox = InboxStore(settings.inbox_location)
    queues = open_queue_store(settings)
    deadline = time.monotonic() + timeout_s
    last = ""
    try:
        while time.monotonic() < deadline:
            _poll(settings, expectation, progress, inbox, queues)
            line = (f"  routed {len(progress.decisions)}/{expectation.decision_total} decisions · "
                    f"delivered {len(_shares(progress) & progress.delivered)}/{len(_shares(progress))} alerts · "
                    f"queued {len(progress.queued)}/{len(_referrals(progress))} referrals · "
                    f"dead letters {len(progress.dead_letters)}/{len(expectation.corrupted)}")
            if line != last:
                say(line)
                last = line
            if _is_complete(progress, expectation):
                break
            time.sleep(1.0)
    finally:
        inbox.close()
        queues.close()
    return progress


def _report(settings: Settings, partnership: str, progress: Progress, expectation: Expectation,
            batch: dict[str, DomesticAbuseIncident], say: Say) -> None:
    directory = settings.store.load_directory()
    inbox = InboxStore(settings.inbox_location)
    say("")
    say(f"== What each school received ({partnership})")
    delivered = _shares(progress) & progress.delivered
    opener = inbox_opener(settings)
    try:
        for school in sorted(directory.of_kind(AgencyKind.SCHOOL),
                             key=lambda a: a.name):
            alerts = [a for a in inbox.alerts(school.urn or "", opener) if a.notification_id in delivered]
            say(f"{school.name} (URN {school.urn}): {len(alerts)} alert(s)")
            for alert in alerts:
                say(f"    {alert.describe()}")
    finally:
        inbox.close()
    say("")
    say("== What each other recipient's queue received")
    for agency_id, count in sorted(Counter(d.recipient for d in _referrals(progress) if d.recipient).items()):
        agency = directory.get(agency_id)
        say(f"{agency.name if agency else agency_id}: {count} referral(s) (safebus queue show --recipient {agency_id})")
    say("")
    say("== Every decision, by agreement and clause (shared, deferred, withheld) and why")
    by_clause: dict[tuple[str, str, str], list[SharingDecision]] = defaultdict(list)
    for decision in progress.decisions.values():
        by_clause[(decision.agreement_id, decision.clause, decision.outcome.value)].append(decision)
    for (agreement, clause, outcome), decisions in sorted(by_clause.items()):
        sample = decisions[0]
        recipients = sorted({d.recipient for d in decisions if d.recipient})
        to = f" -> {', '.join(recipients)}" if recipients and sample.recipient_kind != "school" else ""
        say(f"{len(decisions):3d} x {agreement} v{sample.agreement_version} clause {clause}: {outcome}{to}")
        say(f"        {sample.reason}")
    withheld = [d for d in progress.decisions.values() if d.outcome is Outcome.WITHHELD]
    say("")
    say("== Dead letters")
    for key, record in progress.dead_letters.items():
        expected = expectation.corrupted[key]
        reason = record.header(DLQ_REASON)
        mark = "ok" if reason == expected else f"EXPECTED {expected}"
        detail = record.header(DLQ_DETAIL) or ""
        say(f"  stage={record.header(DLQ_STAGE)} reason={reason} origin-offset={record.header(DLQ_ORIGIN_OFFSET)}"
            f"{' detail=' + detail[:120] if detail else ''} [{mark}]")
    summary = {
        "incidents": len(batch), "decisions": len(progress.decisions),
        "shared": len(_shares(progress)), "delivered": len(delivered),
        "referred": len(_referrals(progress)), "withheld": len(withheld), "dead_letters": len(progress.dead_letters),
    }
    say("")
    say("summary " + json.dumps(summary, sort_keys=True))

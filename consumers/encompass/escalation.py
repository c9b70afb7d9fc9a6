"""
Taking escalation steps: telling people, then recording that they were told.

The monitor (`safebus.consumers.encompass.monitor`) says which steps are due;
this module takes them.  Each notice is an e-mail with no personal data — the
same rule as the Key Adult notice (`safebus.consumers.inbox.email_notice`): it says
that an alert at a setting is waiting or overdue, and where to sign in; never
who the child is.  After the notice, the step becomes an ``audit.escalated``
fact on the audit topic, which the monitor reads back to know it was taken.

Order and failure: notice first, then the fact.  A crash in between repeats the
notice on restart (people may be told twice) rather than recording a step that
nobody was told about.  If the relay is down, the step is not recorded and is
retried on the next tick.

One active, one hot standby (docs/adr/0017): every monitor instance joins the
lease group (`safebus.leases`); the holder acts, the others only observe the
audit topic into their own stores (`safebus.consumers.encompass.audit_follower`),
so a standby that takes over knows every deadline and every step already
taken.  A new holder first takes over the monitor's transactional id, which
fences its predecessor's facts at the broker (`safebus.fenced_producer`), and
checks it still holds the lease before each notice it sends.

Nobody to tell is not a step taken: when a step reaches nobody (a setting with
no deputies, an unknown setting) its fact says so (``nobody_to_notify``, with
the step brought forward in ``moved_to``) and the next step is taken in the
same tick, so an escalation never ends in silence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaException

from safebus.consumers._delivery import delivery_consumer, origin_of, run_batches
from safebus.consumers.audit.attributed_facts import attributed_facts
from safebus.consumers.encompass.audit_follower import AuditFollower, Positions
from safebus.consumers.encompass.monitor import EncompassMonitor, Step
from safebus.consumers.inbox.email_notice import EmailNotifier
from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdults
from safebus.directory import Directory
from safebus.errors import BrokerError
from safebus.fact_signing import FactPublisher
from safebus.fenced_producer import FencedProducer, WriterFenced
from safebus.health import WorkerHealth
from safebus.jcs import canonical_model
from safebus.leases import Lease
from safebus.logs import get_logger
from safebus.metrics import ESCALATION_STEPS
from safebus.records import EVENT_ID, Output, Record, dead_letter
from safebus.schemas.audit import EscalationStep
from safebus.schemas.encompass import KeyAdultRole
from safebus.topics import TopicNames

__all__ = ["LEASE_GROUP", "MONITOR_STAGE", "OVERDUE_SUBJECT", "TRANSFER_SUBJECT", "EscalationNotices",
           "MonitorWorker", "transactional_id"]

_log = get_logger("encompass.escalation")
_LONDON = ZoneInfo("Europe/London")

OVERDUE_SUBJECT = "Operation Encompass: an alert is overdue"
MONITOR_STAGE = "encompass-monitor"
"""The dead-letter stage of a fact the monitor acts on but cannot use."""
TRANSFER_SUBJECT = "Operation Encompass: a child-protection file is due to be transferred"
LEASE_GROUP = "{prefix}-encompass-monitor-lease"
"""The group whose one-partition lease (on the directory topic) makes its holder the acting monitor."""


def transactional_id(names: TopicNames) -> str:
    """The transactional id every deadline monitor of a partnership writes under: a new holder fences the old."""
    return f"{names.prefix}-encompass-monitor"


class EscalationNotices:
    """Sends the notice each step calls for; returns who was told (ids, for the audit fact)."""

    def __init__(self, *, notifier: EmailNotifier, key_adults: KeyAdults,
                 settings: Mapping[str, EducationSetting], monitor: EncompassMonitor) -> None:
        """Send through `notifier`'s relay; people come from `key_adults` and the monitor's policy."""
        self.notifier = notifier
        self.key_adults = key_adults
        self.settings = settings
        self.monitor = monitor

    def notify(self, step: Step) -> tuple[str, ...]:
        """
        Put the e-mails `step` calls for in the outbox; return who they are for (ids, for the audit fact).

        Each message's outbox key is the step and the person, so a step taken
        again after a crash queues nothing twice.
        """
        urn = step.tracked.setting_urn
        setting = self.settings.get(urn) if urn else None
        policy = self.monitor.policy
        if step.step in (EscalationStep.DEPUTIES, EscalationStep.RESURFACED) and setting is not None:
            roles = {KeyAdultRole.DEPUTY} if step.step is EscalationStep.DEPUTIES else set(KeyAdultRole)
            people = [k for k in self.key_adults.for_setting(setting.urn) if k.role in roles]
            for person in self.notifier.recipients(setting, people):
                self._queue(step, person.staff_id, self.notifier.message(setting, person))
            return tuple(k.staff_id for k in people)
        if step.step is EscalationStep.FILE_TRANSFER_PROMPTED and setting is not None:
            people = self.key_adults.for_setting(setting.urn)
            for person in people:
                self._queue(step, person.staff_id, self.notifier.compose(
                    person.email, TRANSFER_SUBJECT, _transfer_text(step, setting, self.notifier.inbox_url)))
            return tuple(k.staff_id for k in people)
        if step.step in (EscalationStep.EDUCATION_SAFEGUARDING_OFFICER, EscalationStep.FILE_TRANSFER_OVERDUE):
            contact = policy.education_safeguarding_officer
        elif step.step is EscalationStep.ELECTIVE_HOME_EDUCATION_OFFICER:
            contact = policy.elective_home_education_officer or policy.education_safeguarding_officer
        elif step.step is EscalationStep.MASH_EDUCATION_DESK:
            contact = policy.mash_education_desk
        else:
            return ()
        self._queue(step, contact.id, self.notifier.compose(
            contact.email, OVERDUE_SUBJECT, _overdue_text(step, setting, self.notifier.inbox_url)))
        return (contact.id,)

    def _queue(self, step: Step, person_id: str, message: EmailMessage) -> None:
        self.notifier.queue(f"escalation/{step.tracked.notification_id}/{step.step.value}/{person_id}", message)


def _overdue_text(step: Step, setting: EducationSetting | None, inbox_url: str) -> str:
    due = step.tracked.due_by.astimezone(_LONDON).strftime("%A %d %B %Y, %H:%M")
    if step.step is EscalationStep.ELECTIVE_HOME_EDUCATION_OFFICER:
        return (f"An Operation Encompass notification for an electively home-educated child has been sent to the "
                f"local authority's children's services queue. Please make sure the child is supported before "
                f"{due}.\n\nReference for the partnership: {step.tracked.notification_id}\n")
    if step.step is EscalationStep.MASH_EDUCATION_DESK:
        return (f"An Operation Encompass notification for a child whose education setting is not known is waiting "
                f"in the MASH education queue. The setting must know before {due}.\n\n"
                f"Reference for the partnership: {step.tracked.notification_id}\n")
    where = f"{setting.name} (URN {setting.urn})" if setting else "a setting"
    if step.due_at < step.tracked.due_by:  # brought forward: an earlier step found nobody to tell
        return (f"Nobody at {where} could be told about an Operation Encompass "
                f"{'file transfer' if step.step is EscalationStep.FILE_TRANSFER_OVERDUE else 'alert'} "
                f"(no Key Adult or deputy on record for this step). It is due by {due}.\n"
                f"Please contact the setting's Designated Safeguarding Lead.\n\n"
                f"Reference for the partnership: {step.tracked.notification_id}\nInbox: {inbox_url}\n")
    if step.step is EscalationStep.FILE_TRANSFER_OVERDUE:
        return (f"A pupil with Operation Encompass history has moved from {where}; the child-protection file "
                f"was due at the new setting by the end of {_last_day(step)} and has not been confirmed as sent.\n"
                f"Please contact the setting's Designated Safeguarding Lead.\n\n"
                f"Reference for the partnership: {step.tracked.notification_id}\n")
    return (f"An Operation Encompass alert for {where} has not been acknowledged by its deadline, {due}.\n"
            f"Please contact the setting's Designated Safeguarding Lead.\n\n"
            f"Reference for the partnership: {step.tracked.notification_id}\nInbox: {inbox_url}\n")


def _last_day(step: Step) -> str:
    """A file-transfer deadline is the end of a school day: name that day."""
    return (step.tracked.due_by - timedelta(minutes=1)).astimezone(_LONDON).strftime("%A %d %B %Y")


def _transfer_text(step: Step, setting: EducationSetting, inbox_url: str) -> str:
    return (f"A pupil with Operation Encompass history has moved from {setting.name} to another setting.\n"
            f"Please transfer the child-protection file, with its Operation Encompass history, separately from the "
            f"main file and securely, by the end of {_last_day(step)}, and confirm it in the inbox under "
            f"'File transfers'.\n\n"
            f"Inbox: {inbox_url}transfers\n")


class MonitorWorker:
    """Feeds the monitor from the audit topic and takes due steps on every tick."""

    def __init__(self, *, bootstrap: str, names: TopicNames, monitor: EncompassMonitor,
                 notices: EscalationNotices | None, clock: Callable[[], datetime], facts: FactPublisher,
                 directory: Callable[[], Directory], group_id: str = "safebus-encompass-monitor") -> None:
        """
        Without `notices`, steps are recorded but nobody is e-mailed (a dry run); `facts` signs and publishes.

        `directory` gives the current signed directory: a fact is acted on only if its author's key is in it
        (`safebus.consumers.audit.attributed_facts`).
        """
        self.bootstrap = bootstrap
        self.names = names
        self.monitor = monitor
        self.notices = notices
        self.clock = clock
        self.group_id = group_id
        self.facts = facts
        self.directory = directory
        self.positions = Positions(monitor.path.with_suffix(".follow.json"), names.audit)
        self._lease: Lease | None = None
        self.acting = False
        """Whether this instance holds the lease and acts (takes steps, announces deadlines)."""

    def run(self, stop: threading.Event, *, health: WorkerHealth | None = None) -> None:
        """Act, or stand by observing, until `stop`; `health` hears the loop (``--health-port``)."""
        lease = self._lease = Lease(self.bootstrap, group=LEASE_GROUP.format(prefix=self.names.prefix),
                                    topic=self.names.agencies).start()
        producer = self.facts.producer
        if isinstance(producer, FencedProducer):
            producer.may_begin = lease.held
        follower = AuditFollower(self.bootstrap, self.positions)
        try:
            while self._stand_by(stop, lease, follower, health):
                self._act(stop, lease, follower, health)
        finally:
            lease.close()  # an acting monitor's lease passes to the standby at once
            follower.close()

    def _stand_by(self, stop: threading.Event, lease: Lease, follower: AuditFollower,
                  health: WorkerHealth | None) -> bool:
        """Observe the audit topic until the lease is ours (True) or the worker stops (False)."""
        _log.info("monitor_standing_by")
        while not stop.is_set():
            if health is not None:
                health.beat()
            try:
                follower.catch_up(self._observe_only, timeout_s=3.0)  # short: back to the lease in time
                if health is not None:
                    health.mark_ready()
            except (BrokerError, KafkaException) as exc:
                _log.warning("monitor_follow_failed", error=str(exc)[:200])
            if lease.wait_held(1.0):
                return not stop.is_set()
        return False

    def _act(self, stop: threading.Event, lease: Lease, follower: AuditFollower, health: WorkerHealth | None) -> None:
        """Fence the previous holder, observe everything it left, then act until stopped or deposed."""
        started = time.monotonic()
        try:
            producer = self.facts.producer
            if isinstance(producer, FencedProducer):
                producer.begin()
            follower.catch_up(self._observe_only)  # to the end: nothing it has not seen lies behind the group
        except (BrokerError, KafkaException) as exc:
            _log.warning("monitor_takeover_failed", error=str(exc)[:200])
            stop.wait(1.0)
            return
        self.acting = True
        _log.info("monitor_acting", takeover_s=round(time.monotonic() - started, 2))
        try:
            run_batches(lambda: delivery_consumer(self.bootstrap, self.group_id), [self.names.audit], self.observe,
                        lease.while_held(stop), idle=self.tick, health=health)
        except WriterFenced as exc:
            _log.warning("monitor_fenced", reason=str(exc))
        finally:
            self.acting = False

    def _observe_only(self, records: list[Record]) -> None:
        """A standby's observing: the same state as the acting monitor's, and no fact, dead letter or notice."""
        facts: list[dict[str, Any]] = []
        directory = self.directory()
        for record in records:
            try:
                fact = self._admit(record, directory)
            except Exception as exc:  # noqa: BLE001 - the acting monitor dead-letters it; here it is only skipped
                _log.warning("monitor_standby_skipped", topic=record.topic, partition=record.partition,
                             offset=record.offset, error=type(exc).__name__)
                continue
            if fact is not None:
                facts.append(fact)
        self.monitor.observe(facts, refused=[])

    def observe(self, records: list[Record]) -> None:
        """
        Apply a batch of audit facts its authors signed (others are logged and ignored), then take due steps.

        The sequencer dead-letters what is not a signed fact, or not a valid
        one; here such records are only never acted on (a second dead letter
        would double the evidence).  A signed fact the monitor cannot apply
        (a field of the wrong type, a time without a zone: refused before it
        reaches the monitor's database, where it would break every later
        tick) is undone on its own and becomes one dead letter (stage
        ``encompass-monitor``, ``internal-error``), and the rest of the batch
        applies: no record stops the monitor (docs/adr/0003).
        """
        directory = self.directory()
        facts: list[dict[str, Any]] = []
        sources: list[Record] = []
        refused: list[Output] = []
        for record in records:
            try:
                fact = self._admit(record, directory)
            except Exception as exc:  # noqa: BLE001 - one record must never stop the monitor
                _log.error("monitor_fact_internal_error", topic=record.topic, partition=record.partition,
                           offset=record.offset, error=type(exc).__name__)
                refused.append(self._refuse(record, "internal-error", type(exc).__name__))
                continue
            if fact is not None:
                facts.append(fact)
                sources.append(record)
        failures: list[tuple[int, Exception]] = []
        self.monitor.observe(facts, refused=failures)
        for index, error in failures:
            record = sources[index]
            _log.error("monitor_fact_internal_error", topic=record.topic, partition=record.partition,
                       offset=record.offset, error=type(error).__name__)
            refused.append(self._refuse(record, "internal-error", type(error).__name__))
        if refused:
            self.facts.publish(refused)  # dead letters: not for the audit topic, so not signed as facts
        deadlines = self.monitor.new_deadlines(at=self.clock())
        if deadlines:  # every deadline is itself on the record, not only those that were met or missed
            try:
                self.facts.publish([Output(topic=self.names.audit, key=d.notification_id.encode(),
                                           value=canonical_model(d),
                                           headers=((EVENT_ID, d.event_id.encode()),)) for d in deadlines])
            except BrokerError:  # the batch is retried: its deadlines must be announced then
                self.monitor.announce_again(d.notification_id for d in deadlines)
                raise
        self.positions.advance(records)  # a later stand-by reads on from here, not from the start
        self.tick()

    def _admit(self, record: Record, directory: Directory) -> dict[str, Any] | None:
        """The fact to apply, or None for a record the monitor does not act on (logged, never its content)."""
        attributed = attributed_facts([record], directory)
        return attributed[0] if attributed else None

    def _refuse(self, record: Record, reason: str, detail: str) -> Output:
        _log.warning("monitor_dead_lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                     reason=reason)
        return dead_letter(raw=record.value, origin=origin_of(record), stage=MONITOR_STAGE, reason=reason,
                           detail=detail, topic=self.names.deadletter)

    def tick(self) -> int:
        """Take every step now due, and the steps brought forward by those that reached nobody; return how many."""
        now = self.clock()
        taken = 0
        for _ in range(len(EscalationStep)):  # each pass can only bring the next step of a schedule forward
            passed = self._take_due(now)
            taken += passed.taken
            if not passed.reached_nobody:
                break
        return taken

    def _take_due(self, now: datetime) -> _Pass:
        taken = reached_nobody = 0
        for step in self.monitor.due_steps(now):
            try:  # a step whose fact cannot be stated is never taken: no notice without its record
                self.monitor.step_fact(step, at=now, notified=())
            except ValueError as exc:
                _log.error("escalation_step_unstateable", notification_id=step.tracked.notification_id[:100],
                           step=step.step.value, error=type(exc).__name__)
                continue
            if self._lease is not None and not self._lease.held():  # deposed: the new holder takes this step
                raise WriterFenced("this monitor no longer holds the lease")
            notified = self.notices.notify(step) if self.notices else ()  # queued: the relay cannot fail it
            # A dry run tells nobody by design: its steps keep their times.
            fact = self.monitor.step_fact(step, at=now, notified=notified,
                                          reached_nobody=self.notices is not None and not notified)
            self.facts.publish([Output(topic=self.names.audit, key=step.tracked.notification_id.encode(),
                                       value=canonical_model(fact),
                                       headers=((EVENT_ID, fact.event_id.encode()),))])
            self.monitor.mark_fired(step, at=now, reached_nobody=fact.nobody_to_notify)
            ESCALATION_STEPS.labels(step=step.step.value).inc()
            _log.info("escalation_step_taken", notification_id=step.tracked.notification_id, step=step.step.value,
                      notified=len(notified), moved_to=fact.moved_to, event_id=fact.event_id)
            taken += 1
            reached_nobody += fact.nobody_to_notify
        return _Pass(taken=taken, reached_nobody=reached_nobody)


@dataclass(frozen=True)
class _Pass:
    taken: int
    reached_nobody: int

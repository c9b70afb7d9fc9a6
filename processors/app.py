"""
The Faust worker that runs `IncidentHandler` over every police ingress topic.

Guarantee: at-least-once with idempotent outputs (docs/adr/0003).  The agent
(concurrency 1) takes records in small batches with ``take_events``, which
acknowledges a batch only after this code has finished with it.  For each
batch every output is sent concurrently and then *all* broker acknowledgements
(``acks=all``) are awaited, so Faust can only commit offsets whose outputs are
already durable.

Faust also acknowledges a batch when the code handling it raises.  So if any
output cannot be made durable, or the batch is cancelled mid-flight, the worker
stops at once with `EXIT_OUTPUT_NOT_DURABLE` instead of raising: nothing is
acknowledged, nothing is committed, and the batch is replayed on restart, where
deterministic ids let every receiver drop the repeats.  Faust's own
``exactly_once`` is not used.

Outages (docs/adr/0003, "Outages heal themselves"): the consumer group's
timing is `GROUP_TIMING`, so a router killed with SIGKILL is replaced by
another (or by its restart) within seconds rather than Faust's default minute;
aiokafka reconnects to a restarted broker by itself (its address does not
change, docs/adr/0002); and SIGTERM ends the worker within
`safebus.shutdown.GRACE_S` even when Faust's graceful stop waits on an absent
broker.

New senders (docs/adr/0007, "Live directory"): the ingress topics come from a
callable over the live directory, compared every `SENDER_CHECK_S`; topics of a
newly published sender are added to the stream the agent iterates, and Faust
resubscribes after `RESUBSCRIBE_PAUSE_S`.  Topics are only ever added: a
retired sender's records are still read, and dead-lettered by the handler.

Health (``--health-port``, `safebus.processors.router_health`): given a
`WorkerHealth`, the worker beats it from its event loop and an app timer marks
it ready once the router's committed offsets reach what its partitions held at
start; `route_batch` counts records in per topic and dead letters by reason.
Faust's own web server stays off.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.conductor import Conductor

from safebus.health import WorkerHealth
from safebus.kafka_security import SecurityProtocol, current_security
from safebus.limits import PRODUCER_MAX_REQUEST_BYTES
from safebus.logs import get_logger
from safebus.metrics import RECORDS_IN, count_dead_letters
from safebus.processors.handler import IncidentHandler
from safebus.processors.router_health import (
    CHECK_S,
    GroupOffsets,
    OffsetReader,
    RouterProgress,
    beat_forever,
    check_progress,
)
from safebus.records import Origin, Output
from safebus.shutdown import hard_exit_later

__all__ = [
    "BATCH_MAX",
    "BATCH_WITHIN_S",
    "EXIT_OUTPUT_NOT_DURABLE",
    "GROUP_TIMING",
    "METADATA_MAX_AGE_S",
    "RESUBSCRIBE_PAUSE_S",
    "SENDER_CHECK_S",
    "create_app",
    "extend_subscription",
    "route_batch",
    "run_worker",
]

_log = get_logger("processor.app")

EXIT_OUTPUT_NOT_DURABLE = 75
"""Process exit status when outputs could not be confirmed (EX_TEMPFAIL: restart and replay)."""
BATCH_MAX = 500
BATCH_WITHIN_S = 0.05
"""A lone record waits at most this long for company; it bounds the latency batching adds."""
GROUP_TIMING: dict[str, float] = {
    "broker_session_timeout": 8.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 30.0,
}
"""
The router's consumer-group timing, in seconds (Faust setting names; the BROKER_* environment variables of
the same names still override them).  A member that stops heartbeating is declared dead after the session
timeout, so a kill -9 is noticed in 8 s instead of Faust's default 60 s; heartbeats every second keep 8
missed beats of slack on a loaded machine; members have 30 s to rejoin a rebalance (Faust's default is 60 s),
ample for a router to finish a batch of `BATCH_MAX`.  The broker's group.min.session.timeout.ms (6 s) is the
floor.  Same values as the confluent-kafka workers' `safebus.kafka_io.GROUP_TIMING`.
"""
SENDER_CHECK_S = 1.0
"""How often the router compares the ingress topics the live directory implies with the ones it reads (a set
difference over a few hundred names: nothing to save by checking less often)."""
METADATA_MAX_AGE_S = 5.0
"""
How old the consumer's view of the cluster may get.  A sender's entry can be published before its topics
exist (`agency publish` on another machine, then `topics apply`): the router subscribes to the names at
once, and the partitions appear, and are assigned, at the next metadata refresh.  aiokafka's default is 5
minutes; one small metadata request every 5 s costs the broker nothing.
"""
RESUBSCRIBE_PAUSE_S = 1.0
"""
Faust waits this long after a subscription change before resubscribing (its default, 45 s, coalesces agents
restarting together; the router has one agent, and a new sender's first incident should not wait).  Each
resubscription is one consumer-group rebalance, so several senders published together still cost one.
"""


def _credentials() -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's (aiokafka's) form of this process's Kafka identity (`safebus.kafka_security`)."""
    security = current_security()
    if security.security_protocol is SecurityProtocol.SASL_SSL:
        return faust.SASLCredentials(username=security.username, password=security.password(),
                                     ssl_context=security.ssl_context(), mechanism=security.sasl_mechanism)
    if security.security_protocol is SecurityProtocol.SSL:
        return faust.SSLCredentials(security.ssl_context())
    return None


def create_app(
    *, bootstrap: str, handler: IncidentHandler, ingress_topics: Callable[[], Sequence[str]], datadir: Path,
    app_id: str = "safebus-router", health: WorkerHealth | None = None, offsets: OffsetReader | None = None,
) -> faust.App:
    """
    Build the Faust app; nothing connects until a worker starts it.  Faust's files go under `datadir`.

    `ingress_topics` is asked at start and every `SENDER_CHECK_S` (it reads the live directory), so a sender
    published while the router runs is read without a restart.  With `health`, a timer checks every
    `CHECK_S` whether the router has caught up (`safebus.processors.router_health`; `offsets` reads the
    broker's offsets, by default the group's committed offsets through the admin API) and reports its lag;
    `run_worker` must then be given the same `health` for the liveness beat.
    """
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=_credentials(),  # the same principal as the process's confluent-kafka clients
        datadir=str(datadir),
        web_enabled=False,
        store="memory://",
        producer_acks=-1,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        broker_session_timeout=GROUP_TIMING["broker_session_timeout"],
        broker_heartbeat_interval=GROUP_TIMING["broker_heartbeat_interval"],
        broker_rebalance_timeout=GROUP_TIMING["broker_rebalance_timeout"],
        consumer_metadata_max_age_ms=int(METADATA_MAX_AGE_S * 1000),
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,  # the bus's limits agree (safebus.limits)
    )
    subscribed = tuple(sorted(set(ingress_topics())))
    source = app.topic(*subscribed, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    cast(Conductor, app.topics)._resubscribe_sleep_lock_seconds = RESUBSCRIBE_PAUSE_S  # Faust's own knob

    @app.agent(source, concurrency=1)
    async def route(stream: faust.StreamT[Any]) -> None:
        # take_events is on the concrete Stream, not on the StreamT protocol.
        batches = cast(faust.Stream[Any], stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S)
        async for events in batches:
            await route_batch(app, handler, events)

    @app.timer(interval=SENDER_CHECK_S)  # type: ignore[untyped-decorator]  # Faust leaves it untyped
    async def follow_senders() -> None:
        nonlocal subscribed
        added = set(ingress_topics()) - set(subscribed)
        if added:
            previous, subscribed = subscribed, tuple(sorted({*subscribed, *added}))
            extend_subscription(app, [source, cast(faust.TopicT, route.channel_iterator)], previous,
                                subscribed)
            _log.info("router_ingress_added", topics=sorted(added), subscribed=len(subscribed))

    if health is not None:
        reader = offsets or GroupOffsets(bootstrap, app_id)
        progress = RouterProgress()

        @app.timer(interval=CHECK_S)  # type: ignore[untyped-decorator]  # Faust leaves it untyped
        async def check_readiness() -> None:
            try:
                assigned = [(tp.topic, tp.partition) for tp in app.consumer.assignment()]
            except Exception as exc:  # noqa: BLE001 - consumer not (re)started yet: not ready, and never a crash
                _log.info("router_assignment_unknown", error=type(exc).__name__)
                return
            await check_progress(health, progress, reader, assigned)

    return app


def extend_subscription(app: faust.App, templates: Sequence[faust.TopicT], previous: tuple[str, ...],
                        topics: tuple[str, ...]) -> None:
    """
    Make the agent read `topics` (a superset of `previous`) without restarting it.

    The agent does not iterate `source` itself: its stream iterates a *clone* registered with Faust's
    conductor, which maps assigned partitions to the channels that asked for their topic.  Changing only
    the source (the attempt ADR 0007 records) made Faust subscribe and assign the new partitions to a channel
    nobody reads, so records from them were never seen.  Here every registered clone of the source is given
    the new topics and re-registered, which flags the conductor to resubscribe (after `RESUBSCRIBE_PAUSE_S`);
    the rebalance then maps the new partitions to the agent's own stream.  Faust's pattern subscription is no
    alternative: its Kafka driver subscribes by names only and a pattern topic silently reads nothing.
    """
    for template in templates:  # the source and the agent's channel iterator: the clones made later
        template.topics = topics    # (an agent restarted by Faust's supervisor) start from them
    conductor = app.topics
    for channel in [c for c in conductor if tuple(sorted(c.topics)) == previous]:
        conductor.discard(channel)
        channel.topics = topics
        conductor.add(channel)


async def route_batch(app: faust.App, handler: IncidentHandler, events: Sequence[faust.EventT[Any]]) -> None:
    """Handle `events` and return only once every output they caused is durable; otherwise stop the process."""
    try:
        with handler.batch():  # one SQLite commit per batch, once its outputs are durable
            deliveries = []
            routed: list[Output] = []
            for event in events:
                message = event.message
                origin = Origin(topic=message.topic, partition=message.partition, offset=message.offset,
                                key=message.key)
                RECORDS_IN.labels(topic=message.topic).inc()
                outputs = handler.handle(event.value, origin)
                routed.extend(outputs)
                for output in outputs:
                    deliveries.append(await app.producer.send(
                        output.topic, output.key, output.value, None, None, list(output.headers)
                    ))
            await asyncio.gather(*deliveries)
        count_dead_letters(routed)  # durable now: counted once, as written
    except BaseException as exc:  # noqa: BLE001 - including cancellation: the batch is not durable
        _log.critical("outputs_not_durable_stopping", error=type(exc).__name__, batch=len(events))
        os._exit(EXIT_OUTPUT_NOT_DURABLE)


class _BoundedStopWorker(faust.Worker):
    """
    A Faust worker whose stop on SIGTERM/SIGINT is bounded (a hard exit follows if it stalls), and with no spinner.

    Faust draws a terminal spinner on its stdout for every warning it logs,
    even when stdout is a file: cursor codes in front of the JSON lines made the
    router's log file unparseable. Our logs are the structlog JSON lines alone.
    """

    def __init__(self, *args: Any, health: WorkerHealth | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None
        self.health = health

    async def on_start(self) -> None:
        """Start the liveness beat first: it runs on this loop from before the app starts until the worker stops."""
        await super().on_start()
        if self.health is not None:
            self.add_future(beat_forever(self.health))

    def _on_sigterm(self) -> None:
        hard_exit_later(signal.SIGTERM)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        hard_exit_later(signal.SIGINT)
        super()._on_sigint()


def run_worker(app: faust.App, *, loglevel: str = "warn", health: WorkerHealth | None = None) -> None:
    """Run the worker in this process until it is stopped by a signal (then gone within GRACE_S); beat `health`."""
    _log.info("processor_starting", app_id=app.conf.id)
    worker = _BoundedStopWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False, health=health)
    worker.execute_from_commandline()

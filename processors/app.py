"""
The Faust worker that runs `IncidentHandler` over every police ingress topic.

Guarantee: at-least-once with idempotent outputs.  The agent has concurrency 1
and awaits the broker's acknowledgement of every output before it takes the
next record, so Faust can only commit an offset whose outputs are already
durable.  A crash replays from the last commit; replayed outputs carry the same
deterministic ids and receivers deduplicate.  Faust's own ``exactly_once`` is
not used (see docs/adr/0003-processing-guarantee.md).
"""

from __future__ import annotations

from typing import Any

import faust

from safebus.logs import get_logger
from safebus.processors.handler import IncidentHandler
from safebus.records import Origin

_log = get_logger("processor.app")


def create_app(
    *, bootstrap: str, handler: IncidentHandler, ingress_topics: list[str], app_id: str = "safebus-router"
) -> faust.App:
    """Build the Faust app; nothing connects until a worker starts it."""
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        web_enabled=False,
        store="memory://",
        producer_acks=-1,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
    )
    source = app.topic(*ingress_topics, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(source, concurrency=1)
    async def route(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            origin = Origin(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key)
            for output in handler.handle(event.value, origin):
                await app.producer.send_and_wait(
                    output.topic, output.key, output.value, None, None, list(output.headers)
                )

    return app


def run_worker(app: faust.App, *, loglevel: str = "warn") -> None:
    """Run the worker in this process until it is stopped by a signal."""
    _log.info("processor_starting", app_id=app.conf.id)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()

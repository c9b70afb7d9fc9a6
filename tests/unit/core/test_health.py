"""A worker's health endpoint: live while its loop comes round, ready once caught up, metrics for scraping."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from safebus.health import HealthServer, WorkerHealth, serve_health
from safebus.metrics import DEAD_LETTERS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _get(server: HealthServer, path: str) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(clock: Clock) -> Iterator[tuple[WorkerHealth, HealthServer]]:
    health = WorkerHealth("inbox", stall_after_s=60, clock=clock)
    server = serve_health(health, port=0)
    try:
        yield health, server
    finally:
        server.close()


def test_not_ready_until_caught_up_then_ready(served: tuple[WorkerHealth, HealthServer]) -> None:
    """A starting worker is live but not ready: a load balancer or a rolling restart waits for it."""
    health, server = served
    assert _get(server, "/healthz")[0] == 200
    assert _get(server, "/readyz")[0] == 503
    health.mark_ready()
    assert _get(server, "/readyz")[0] == 200


def test_a_loop_that_stops_coming_round_is_not_live_nor_ready(served: tuple[WorkerHealth, HealthServer],
                                                               clock: Clock) -> None:
    """Stuck for longer than the stall time: 503 on both, so the supervisor restarts it; a beat brings it back."""
    health, server = served
    health.mark_ready()
    clock.now += 61
    assert (_get(server, "/healthz")[0], _get(server, "/readyz")[0]) == (503, 503)
    health.beat()
    assert (_get(server, "/healthz")[0], _get(server, "/readyz")[0]) == (200, 200)


def test_metrics_are_served_in_prometheus_text_format(served: tuple[WorkerHealth, HealthServer]) -> None:
    """What the worker counted is scraped as safebus_* series, by reason, never with personal data."""
    _, server = served
    DEAD_LETTERS.labels(reason="bad-signature").inc()
    status, content_type, body = _get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'safebus_dead_letters_total{reason="bad-signature"}' in body
    assert "safebus_consumer_lag" in body


def test_anything_else_is_not_found(served: tuple[WorkerHealth, HealthServer]) -> None:
    _, server = served
    assert _get(server, "/")[0] == 404

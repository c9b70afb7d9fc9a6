"""
The gateway bounds itself (issue 11, bullet 7): threads, time per request and each credential's rate.

A real gateway on loopback with real sockets; Kafka is replaced by the
recording publisher of ``test_gateway`` (real permissions and sealing, no
broker), because none of this depends on the bus.  Limits are set small so
that the bounds show in seconds.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from safebus.app.wiring import Settings, key_service_for
from safebus.directory import Agency, Directory
from safebus.errors import ConfigError
from safebus.producers.gateway import EventPublisher, Gateway, GatewayLimits, add_credential, default_credentials_path
from safebus.topics import TopicNames
from tests.conftest import FIXED_NOW, Partnership
from tests.unit.producers.gateway.test_server import AGENCIES, RecordingPublisher, Running, example, post


@contextmanager
def serving(partnership: Partnership, limits: GatewayLimits) -> Iterator[Running]:
    """A gateway with `limits`, serving from a thread, with a credential for each of `AGENCIES`."""
    credentials = default_credentials_path(partnership.state_dir)
    tokens = {agency: add_credential(credentials, agency) for agency in AGENCIES}
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())
    broker_down = threading.Event()
    publishers: list[RecordingPublisher] = []

    def factory(agency: Agency, directory: Directory) -> EventPublisher:
        publisher = RecordingPublisher(
            broker_down=broker_down, bootstrap=settings.bootstrap, agency=partnership.keys(agency.id),
            kind=agency.kind, router=directory.router().public_keys(), names=settings.names,
            tokeniser=partnership.tokeniser, keys=key_service_for(partnership.state_dir), clock=lambda: FIXED_NOW,
        )
        publishers.append(publisher)
        return publisher

    gateway = Gateway(settings, credentials, publisher_factory=factory, limits=limits)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield Running(gateway=gateway, credentials=credentials, tokens=tokens, publishers=publishers,
                      broker_down=broker_down)
    finally:
        gateway.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the gateway did not stop"


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the peer closed `sock` within `seconds`, and what it sent first."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def _connection_threads() -> int:
    """The gateway's connection threads alive now (not the process's others: a test's or a library's come and go)."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("gateway-worker"))


def test_500_half_open_connections_get_no_more_threads_than_the_cap(partnership: Partnership) -> None:
    """500 connections that send nothing: at most `max_connections` threads; the rest get a quick 503, no thread."""
    limits = GatewayLimits(max_connections=20, max_connections_per_source=20, request_timeout_s=5.0)
    with serving(partnership, limits) as running:
        before = _connection_threads()
        host, port = running.gateway.address
        sockets = []
        peak = 0
        try:
            for _ in range(500):
                sockets.append(socket.create_connection((host, port), timeout=5))
                peak = max(peak, _connection_threads())
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                peak = max(peak, _connection_threads())
                time.sleep(0.05)
            busy = 0
            for sock in sockets[100:]:
                closed, first = _closed_within(sock, 2.0)
                busy += closed and first.startswith(b"HTTP/1.1 503")
        finally:
            for sock in sockets:
                sock.close()
        print(f"threads before: {before}, peak under 500 half-open connections: {peak} "
              f"(cap {limits.max_connections}); {busy} of 400 later connections answered 503 at once")
        assert peak - before <= limits.max_connections
        assert busy >= 380
        deadline = time.monotonic() + 5  # once the half-open connections are gone, requests are answered again
        answer = post(running, example("police.domestic-abuse-incident"))
        while answer.status == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = post(running, example("police.domestic-abuse-incident"))
        assert answer.status == 202


def test_a_client_trickling_its_headers_is_cut_off_at_the_request_deadline(partnership: Partnership) -> None:
    """A byte every 0.2 s keeps no per-read timeout from firing; the 1 s deadline for the whole request does."""
    with serving(partnership, GatewayLimits(request_timeout_s=1.0)) as running:
        host, port = running.gateway.address
        with socket.create_connection((host, port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\n")
            closed = False
            for byte in b"X-Slow: " + b"a" * 40:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                time.sleep(0.2)
                sock.settimeout(0.001)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except (BlockingIOError, TimeoutError):
                    pass
                except ConnectionResetError:
                    closed = True
                    break
            elapsed = time.monotonic() - started
        assert closed, "the trickling client was never cut off"
        assert elapsed < 2.5


def test_a_body_that_does_not_arrive_in_time_is_408(partnership: Partnership) -> None:
    """Headers on time, then the body trickles: 408 at the deadline, not a thread held for minutes."""
    with serving(partnership, GatewayLimits(request_timeout_s=1.0)) as running:
        host, port = running.gateway.address
        with socket.create_connection((host, port), timeout=5) as sock:
            started = time.monotonic()
            token = running.tokens["northdale-police"]
            sock.sendall(f"POST /v1/events HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode())
            answer = b""
            sock.settimeout(0.2)
            while time.monotonic() - started < 5 and b"\r\n\r\n" not in answer:
                try:
                    sock.sendall(b" ")
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert time.monotonic() - started < 3


def test_over_its_rate_a_credential_gets_429_with_retry_after_and_others_do_not(partnership: Partnership) -> None:
    """A burst of 3, then one every 2 s: the 4th request at once is 429 with Retry-After; another agency is served."""
    with serving(partnership, GatewayLimits(rate_per_s=0.5, burst=3)) as running:
        answers = [post(running, example("police.domestic-abuse-incident")) for _ in range(4)]
        assert [a.status for a in answers] == [202, 202, 202, 429]
        limited = answers[-1]
        assert limited.body["error"] == "rate-limited"
        assert limited.headers["retry-after"] == "2"
        assert len(running.published()) == 3  # the refused one was not published
        assert post(running, example("marac.referral-submitted"), agency="northdale-idva").status == 202
        time.sleep(2.05)
        assert post(running, example("police.domestic-abuse-incident")).status == 202


def test_keep_alive_carries_many_requests_and_shutdown_closes_idle_connections_at_once(
        partnership: Partnership) -> None:
    """One connection, 20 requests; the connection closes after the per-connection cap; shutdown is not held up."""
    limits = GatewayLimits(max_requests_per_connection=10, keepalive_idle_s=30.0)
    with serving(partnership, limits) as running:
        host, port = running.gateway.address
        connection = http.client.HTTPConnection(host, port, timeout=10)
        peers = set()
        for _ in range(20):
            connection.request("GET", "/v1/health")
            response = connection.getresponse()
            assert json.loads(response.read()) == {"status": "ok"}
            assert connection.sock is None or connection.sock.getsockname() is not None
            peers.add(response.getheader("Connection"))
        assert peers == {"keep-alive", "close"}
        connection.request("GET", "/v1/health")  # left idle on a kept-alive connection
        connection.getresponse().read()
        started = time.monotonic()
        running.gateway.shutdown()
        assert time.monotonic() - started < 3, "an idle keep-alive connection held shutdown up"
        connection.close()


def test_limits_come_from_the_environment_and_nonsense_is_refused() -> None:
    """Every limit has a variable; a non-number or a zero is a ConfigError naming it."""
    limits = GatewayLimits.from_env({"SAFEBUS_GATEWAY_MAX_CONNECTIONS": "8", "SAFEBUS_GATEWAY_RATE_PER_S": "2.5",
                                     "SAFEBUS_GATEWAY_MAX_CONNECTIONS_PER_SOURCE": "4"})
    assert (limits.max_connections, limits.max_connections_per_source, limits.rate_per_s) == (8, 4, 2.5)
    assert GatewayLimits.from_env({}) == GatewayLimits()
    with pytest.raises(ConfigError, match="SAFEBUS_GATEWAY_BURST"):
        GatewayLimits.from_env({"SAFEBUS_GATEWAY_BURST": "lots"})
    with pytest.raises(ConfigError, match="rate_per_s"):
        GatewayLimits(rate_per_s=0)


def test_between_requests_the_gateway_serves_its_publishers_client_events(partnership: Partnership) -> None:
    """
    With no request coming, each agency's publisher is still served about every half second.

    librdkafka queues its errors and log lines (many a second while the broker
    is away) until the client is polled; an unserved idle publisher grew the
    gateway by kilobytes a second (bench/README.md, gateway soak).
    """
    served: list[float] = []

    class Counting(RecordingPublisher):
        def serve_events(self) -> None:
            served.append(time.monotonic())
            super().serve_events()

    credentials = default_credentials_path(partnership.state_dir)
    token = add_credential(credentials, "northdale-police")
    settings = Settings(state_dir=partnership.state_dir, bootstrap="127.0.0.1:1", names=TopicNames())

    def factory(agency: Agency, directory: Directory) -> EventPublisher:
        return Counting(broker_down=threading.Event(), bootstrap=settings.bootstrap,
                        agency=partnership.keys(agency.id), kind=agency.kind,
                        router=directory.router().public_keys(), names=settings.names,
                        tokeniser=partnership.tokeniser, keys=key_service_for(partnership.state_dir),
                        clock=lambda: FIXED_NOW)

    gateway = Gateway(settings, credentials, publisher_factory=factory, limits=GatewayLimits())
    stop = threading.Event()
    thread = threading.Thread(target=gateway.run, args=(stop,), daemon=True)
    thread.start()
    try:
        host, port = gateway.address
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("POST", "/v1/events", body=json.dumps(example("police.domestic-abuse-incident")),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert connection.getresponse().status == 202
        connection.close()
        idle_from = time.monotonic()
        time.sleep(2.2)
        assert len([t for t in served if t >= idle_from]) >= 3, "an idle publisher was not served"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the gateway did not stop"

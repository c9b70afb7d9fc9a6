"""
The gateway's HTTP side: the server, its connection caps, deadlines, keep-alive and worker pool.

Split from what a request means (`safebus.producers.gateway.ingest`) because
this is what keeps the gateway up however its callers behave, and it is
reasoned about in threads and sockets, not in contracts.

- **stdlib ``ThreadingHTTPServer``, not aiohttp.** Every step after parsing
  blocks: scrypt, sealing, and `produce_all`, which waits for the broker's
  acknowledgement. A bounded pool of kept worker threads fits that; an event
  loop would only pass each step to an executor.
- **Bounded** (`safebus.producers.gateway.limits`): a cap on connections (in
  total and per source; over it, an immediate 503 without a thread) and a
  deadline for each whole request. Keep-alive is allowed, with a short idle
  timeout and a cap on requests per connection; on shutdown idle connections
  are closed at once, so shutdown waits only for requests in flight.
- **Payloads are never logged.** A request's log line carries the path,
  status, ids, a reason code and the JSON paths of errors, never values.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import queue
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from safebus.health import WorkerHealth
from safebus.kafka_security import client_config
from safebus.live_directory import follow
from safebus.logs import get_logger
from safebus.metrics import GATEWAY_REFUSED
from safebus.producers.gateway.ingest import MAX_BODY_BYTES, Ingest, PublisherFactory, Reply, _Refusal, _too_large
from safebus.producers.gateway.limits import BUSY_RESPONSE, Admission, DeadlineReader, GatewayLimits
from safebus.settings import Settings

__all__ = ["EVENTS_PATH", "HEALTH_PATH", "Gateway"]

_LINGER_BYTES, _LINGER_S = 4 << 20, 2.0
"""After an early answer, read at most this much of an unwanted body, for at most this long, before closing."""

_PROBE_EVERY_S, _PROBE_TIMEOUT_S = 2.0, 2.0
"""Until ready, how often the gateway asks the broker whether it is reachable, and how long it waits each time."""

EVENTS_PATH = "/v1/events"
HEALTH_PATH = "/v1/health"

_log = get_logger("producers.gateway")


def _frames(exc: BaseException) -> list[str]:
    """Where an unexpected error happened (file, line, function) without its message, which may quote data."""
    return [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)][-8:]


class Gateway(Ingest):
    """
    The ingress gateway: construct, then `serve_forever()` (or `run(stop)`), then `shutdown()`.

    `port=0` picks a free port, which `address` reports. `publisher_factory`
    replaces the real Kafka publishers, for tests. `limits` bounds
    connections, request time and each credential's rate (default
    `GatewayLimits.from_env()`); `request_timeout_s`, if given, overrides its
    request deadline.
    """

    def __init__(self, settings: Settings, credentials_path: Path, *, host: str = "127.0.0.1", port: int = 0,
                 publisher_factory: PublisherFactory | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 request_timeout_s: float | None = None, limits: GatewayLimits | None = None) -> None:
        """Load credentials and the directory now, so that misconfiguration fails at start-up, not per request."""
        super().__init__(settings, credentials_path, publisher_factory=publisher_factory,
                         max_body_bytes=max_body_bytes, request_timeout_s=request_timeout_s, limits=limits)
        self._state = threading.Lock()
        self._closing = False
        self._serving: int | None = None
        self._stopped = threading.Event()
        self._server = _Server((host, port), _Handler, gateway=self)
        self._probe: AdminClient | None = None
        if not ipaddress.ip_address(self.address[0]).is_loopback:
            _log.warning("gateway.not_loopback", host=self.address[0],
                         advice="bearer tokens travel in clear: put a TLS-terminating proxy in front")

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the gateway listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def closing(self) -> bool:
        """Whether `shutdown()` has been asked for (replies then close their connections)."""
        return self._closing

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host, port = self.address
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until `shutdown()`; then wait for requests in flight to finish and close."""
        with self._state:
            if self._closing:
                return
            self._serving = threading.get_ident()
        # Agencies, rotations and retirements published while it serves apply to the next request.
        follow(self._directory, bootstrap=self.settings.bootstrap, topic=self.settings.names.agencies)
        _log.info("gateway.listening", url=self.url)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.close_idle()  # kept-alive connections waiting for a next request end now
            self._server.server_close()  # joins request threads: in-flight publishes complete
            self._directory.close()
            self._stopped.set()
            _log.info("gateway.stopped")

    def shutdown(self) -> None:
        """
        Stop serving. Safe from any thread, and before `serve_forever()` has run.

        Called from another thread, it returns once the server has closed.
        Called from the serving thread (a signal handler, say), it only asks the
        server to stop.
        """
        with self._state:
            self._closing = True
            serving = self._serving
        if serving is None:
            self._server.server_close()
        elif serving == threading.get_ident():
            threading.Thread(target=self._server.shutdown, name="gateway-shutdown", daemon=True).start()
        else:
            self._server.shutdown()
            self._stopped.wait()

    def run(self, stop: threading.Event, *, health: WorkerHealth | None = None) -> None:
        """
        Serve until `stop` is set (the CLI sets it from SIGTERM/SIGINT), then shut down.

        `health` (``--health-port``) hears this loop every half second while the
        serving thread is alive (liveness), and is marked ready once the gateway
        is connected to the bus (`connected`).
        """
        thread = threading.Thread(target=self.serve_forever, name="gateway", daemon=True)
        thread.start()
        probe_due = 0.0
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
            self.serve_idle_publishers()
            if health is not None:
                health.beat()
                if not health.ready() and time.monotonic() >= probe_due:
                    probe_due = time.monotonic() + _PROBE_EVERY_S
                    if self.connected():
                        health.mark_ready()
        self.shutdown()
        thread.join()

    def connected(self) -> bool:
        """
        Whether the gateway is connected to the bus: what its ``/readyz`` waits for.

        Two things: the live directory has read what the directory topic held
        (or found there was nothing to read), so the agencies it authorises are
        the partnership's current ones; and the broker answers a metadata
        request from this process's Kafka principal (the one its publishers
        use) naming that topic.  The agencies' publishers are built on their
        first request, so this is the closest honest sign, before any request,
        that a publish would reach the broker.
        """
        if not self._directory.caught_up:
            return False
        if self._probe is None:
            self._probe = AdminClient(client_config(self.settings.bootstrap, log_level=0))
        topic = self.settings.names.agencies
        try:
            metadata = self._probe.list_topics(topic, timeout=_PROBE_TIMEOUT_S)
        except KafkaException as exc:
            _log.info("gateway.bus_not_reached", error=str(exc)[:200])
            return False
        found = metadata.topics.get(topic)
        return bool(metadata.brokers) and found is not None and found.error is None


class _Server(ThreadingHTTPServer):
    """
    A bounded pool of worker threads, at most `GatewayLimits.max_connections`; connections over it get a quick 503.

    Workers are started as needed and then kept: the same validation and
    sealing run from ever new threads grew native memory (docs/adr/0007).
    Workers are not daemons, so `server_close()` waits for publishes in flight.
    """

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, gateway: Gateway) -> None:
        self.gateway = gateway
        self.admission = Admission(gateway.limits)
        self._idle: set[socket.socket] = set()
        self._idle_lock = threading.Lock()
        self._busy_logged = 0.0
        self._work: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._pool_lock = threading.Lock()
        self._waiting_workers = 0
        self._queued = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a worker if the caps allow; otherwise answer 503 from this (accepting) thread."""
        source = str(client_address[0])
        if not self.admission.admit(source):
            self._refuse_busy(request)
            return
        with self._pool_lock:
            self._queued += 1
            if self._queued > self._waiting_workers and len(self._workers) < self.gateway.limits.max_connections:
                worker = threading.Thread(target=self._worker, name=f"gateway-worker-{len(self._workers)}")
                self._workers.append(worker)
                worker.start()
        self._work.put((request, client_address))

    def _worker(self) -> None:
        """Serve connections from the queue until told to stop (None)."""
        while True:
            with self._pool_lock:
                self._waiting_workers += 1
            item = self._work.get()
            with self._pool_lock:
                self._waiting_workers -= 1
                self._queued -= item is not None
            if item is None:
                return
            self.process_request_thread(*item)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.admission.release(str(client_address[0]))

    def server_close(self) -> None:
        """Close the listening socket, then let every worker finish its connection and stop."""
        super().server_close()
        with self._pool_lock:
            workers = list(self._workers)
        for _ in workers:
            self._work.put(None)
        for worker in workers:
            worker.join()

    def _refuse_busy(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(BUSY_RESPONSE)
        except OSError:
            pass  # its buffer is full or it has gone: it is closed either way
        finally:
            self.shutdown_request(request)
        GATEWAY_REFUSED.labels(status="503", reason="busy").inc()
        now = time.monotonic()
        if now - self._busy_logged > 10:  # one line per 10 s under a flood, with the running count
            self._busy_logged = now
            _log.warning("gateway.busy", refused_connections=self.admission.refused,
                         max_connections=self.gateway.limits.max_connections)

    def idle(self, connection: socket.socket, waiting: bool) -> bool:
        """Mark a kept-alive connection as waiting (or not) for its next request; False if shutting down."""
        with self._idle_lock:
            if waiting:
                self._idle.add(connection)
            else:
                self._idle.discard(connection)
        return not self.gateway.closing

    def close_idle(self) -> None:
        """End every connection waiting for a next request: their threads see end of stream and finish."""
        with self._idle_lock:
            waiting = list(self._idle)
        for connection in waiting:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a broken connection or bug by type and location; the default prints to stderr."""
        exc = sys.exc_info()[1]
        _log.error("gateway.connection_error", error=type(exc).__name__, frames=_frames(exc) if exc else [])


class _Handler(BaseHTTPRequestHandler):
    """Maps HTTP onto `Gateway.accept`; keeps a connection alive only after a request it read whole."""

    server_version = "safebus-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # answers ``Expect: 100-continue`` and allows keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: without this a kept-alive reply waits 40 ms

    @property
    def gateway(self) -> Gateway:
        return cast(_Server, self.server).gateway

    def setup(self) -> None:
        """Read through a deadline, so a slow client cannot hold a thread past its request's time."""
        super().setup()
        self.connection.settimeout(self.gateway.request_timeout_s)  # writes: a client that never reads
        self.rfile.close()  # the stdlib's reader, replaced by one that keeps the deadline
        self._reader = DeadlineReader(self.connection)
        self._buffered = io.BufferedReader(self._reader, 65536)
        self.rfile = self._buffered
        self._unread = 0  # body bytes the client may still be sending when we answer early
        self._served = 0
        self._reusable = False

    def handle_one_request(self) -> None:
        """Wait for the next request (briefly, on a kept-alive connection), then handle it within its deadline."""
        limits = self.gateway.limits
        self._reusable = False
        self._reader.deadline = time.monotonic() + (limits.request_timeout_s if self._served == 0
                                                    else limits.keepalive_idle_s)
        server = cast(_Server, self.server)
        if self._served and not server.idle(self.connection, True):
            self.close_connection = True
            return
        try:
            self._buffered.peek(1)  # the first byte of the next request, or end of stream / timeout
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        finally:
            if self._served:
                server.idle(self.connection, False)
        super().handle_one_request()
        self._served += 1

    def parse_request(self) -> bool:
        """The request has begun: all of it (headers, body) must arrive within the request deadline from now."""
        if self._served:
            self._reader.deadline = time.monotonic() + self.gateway.limits.request_timeout_s
        return super().parse_request()

    def version_string(self) -> str:
        """``Server: safebus-gateway``, without the Python version."""
        return self.server_version

    def handle_expect_100(self) -> bool:
        """Refuse an oversize body before the client sends it, when the client asks first."""
        declared = self.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > self.gateway.max_body_bytes:
            self._respond(_too_large(self.gateway.max_body_bytes).reply, path=self._route())
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's access log: `_respond` writes a structured line instead."""

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        """Health check; the events path only takes POST."""
        path = self._route()
        self._reusable = not self.headers.get("Content-Length", "0").strip("0 ") and \
            not self.headers.get("Transfer-Encoding")
        if path == HEALTH_PATH:
            self._respond(Reply(200, {"status": "ok"}), path=path)
        elif path == EVENTS_PATH:
            self._respond(Reply(405, {"error": "method-not-allowed", "message": "POST events"}, (("Allow", "POST"),)),
                          path=path)
        else:
            self._respond(Reply(404, {"error": "not-found", "message": "no such endpoint"}), path=path)

    def do_POST(self) -> None:
        """Read the body within limits, then hand it to the gateway."""
        path = self._route()
        trace: dict[str, object] = {}
        if path != EVENTS_PATH:
            self._respond(Reply(404, {"error": "not-found", "message": "no such endpoint"}), path=path)
            return
        try:
            body = self._body()
            self._reusable = True  # read whole: the connection may carry the next request
            reply = self.gateway.accept(authorization=self.headers.get("Authorization"),
                                        content_type=self.headers.get("Content-Type"), body=body, trace=trace)
        except _Refusal as refusal:
            reply = refusal.reply
            if refusal.issues:
                trace["error_paths"] = [issue.path for issue in refusal.issues][:50]
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not drop the connection
            trace.update(error=type(exc).__name__, frames=_frames(exc))
            reply = Reply(500, {"error": "internal", "message": "the gateway failed; the event was not published"})
        self._respond(reply, path=path, trace=trace)

    def _body(self) -> bytes:
        """The request body, refusing what is too large, of no declared length, or cut short."""
        declared = self.headers.get("Content-Length")
        self._unread = _LINGER_BYTES
        if self.headers.get("Transfer-Encoding") or declared is None:
            raise _Refusal(411, "length-required", "send the body with a Content-Length (not chunked)")
        if not declared.strip().isdigit():
            raise _Refusal(400, "bad-content-length", "Content-Length must be a non-negative integer")
        length = int(declared)
        if length > self.gateway.max_body_bytes:
            self._unread = min(length, _LINGER_BYTES)
            raise _too_large(self.gateway.max_body_bytes)
        self._unread = 0
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise _Refusal(408, "request-timeout", "the body did not arrive in time") from None
        if len(body) != length:
            raise _Refusal(400, "incomplete-body", "the body is shorter than its Content-Length")
        return body

    def _respond(self, reply: Reply, *, path: str, trace: dict[str, object] | None = None) -> None:
        """Log the request (before answering, so the line exists once the client has its answer), then answer."""
        facts = {"reason": reply.body["error"]} if "error" in reply.body else {}
        if reply.status >= 400:
            GATEWAY_REFUSED.labels(status=str(reply.status), reason=str(reply.body.get("error", "unknown"))[:64]).inc()
        level = _log.error if reply.status >= 500 else _log.info
        level("gateway.request", method=self.command, path=path, status=reply.status, **facts, **(trace or {}))
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        keep = (self._reusable and not self.close_connection and not self.gateway.closing
                and self._served + 1 < self.gateway.limits.max_requests_per_connection)
        self.send_header("Connection", "keep-alive" if keep else "close")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self._unread:
            self._linger(self._unread)

    def _linger(self, limit: int) -> None:
        """
        Read and drop what the client is still sending (up to `limit` bytes, briefly) before closing.

        Closing a socket with unread data sends a reset, and a reset can destroy
        the 413 before the client reads it.
        """
        deadline = time.monotonic() + _LINGER_S
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while limit > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.connection.recv(min(limit, 65536))
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass  # the client went away: nothing left to protect


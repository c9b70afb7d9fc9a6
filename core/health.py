"""
A worker's health, for a supervisor and a monitoring system: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz`` (liveness): 200 while the worker's loop has come round within
  `stall_after_s`; 503 once it has not (a supervisor restarts it). A loop
  waiting on an absent broker still comes round, so an outage is not a reason
  to restart.
- ``/readyz`` (readiness): 200 once the worker is connected and has caught up
  with what was on the bus when it started (its loop says so with
  `mark_ready`), and while it is live; 503 before.
- ``/metrics``: the process's Prometheus registry (`safebus.metrics`).

Served by the standard library on loopback by default, on a port of its own
per worker (a scrape target each): a few lines of ``http.server`` rather than a
web framework, because the three answers are constant-size and the server must
keep answering while the worker itself is busy or stuck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from safebus.logs import get_logger

__all__ = ["HealthServer", "WorkerHealth", "serve_health"]

_log = get_logger("health")


class WorkerHealth:
    """What the loop of one worker reports: it came round (`beat`), it is ready (`mark_ready`)."""

    def __init__(self, worker: str, *, stall_after_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._last_beat = clock()
        self._ready = False

    def beat(self) -> None:
        """The loop came round."""
        self._last_beat = self._clock()

    def mark_ready(self) -> None:
        """Connected and caught up past start-up (once is enough: readiness then follows liveness)."""
        if not self._ready:
            _log.info("worker_ready", worker=self.worker)
        self._ready = True

    def live(self) -> bool:
        """Whether the loop came round recently enough."""
        return self._clock() - self._last_beat <= self.stall_after_s

    def ready(self) -> bool:
        """Whether the worker is ready and live."""
        return self._ready and self.live()


class HealthServer:
    """A running health endpoint: `port` it listens on, `close()` to stop it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The TCP port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop answering."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_health(health: WorkerHealth, *, port: int, host: str = "127.0.0.1") -> HealthServer:
    """Answer ``/healthz``, ``/readyz`` and ``/metrics`` for `health` on `host`:`port`, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "safebus"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok = health.live() if path == "/healthz" else health.ready()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"not ok\n", "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found\n", "text/plain; charset=utf-8")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds are not worth a log line each."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name=f"health-{health.worker}", daemon=True)
    thread.start()
    _log.info("health_listening", worker=health.worker, host=host, port=server.server_address[1])
    return HealthServer(server, thread)

"""
How the ingress gateway bounds itself: connections, time per request, requests per credential.

The gateway faces other organisations' networks, so it must stay up however
its callers behave.  Before this, each connection got a thread of its own
and a socket timeout per read: 500 half-open connections made 184 threads in
3 s, and a client trickling one byte a second could hold a thread forever.

- **A cap on connections**, in total and per source address
  (`GatewayLimits.max_connections`, `max_connections_per_source`).  A
  connection over the cap is answered at once, on the accepting thread,
  with a canned ``503`` and ``Retry-After``, and closed: it never gets a
  thread.  So the gateway's threads are bounded by the cap whatever arrives.
- **A deadline per request, not per read** (`request_timeout_s`).  The
  request line, headers and body must all have arrived within it; the
  socket reader (`DeadlineReader`) shrinks each read's timeout to what is
  left, so trickling bytes does not extend it.  A keep-alive connection
  waits `keepalive_idle_s` at most for its next request.
- **A token bucket per credential** (`rate_per_s`, `burst`).  An agency
  over its rate gets ``429`` with ``Retry-After`` (whole seconds until a
  token is there); other agencies are not affected.  Buckets are kept only
  for authenticated credentials, so their number is bounded by the
  credentials file, not by what strangers send.

Why a bucket of our own rather than a library: it is twenty lines over a
dict keyed by credential id, the ``limits`` package's in-memory storage would
add an expiry timer thread to a process whose threads we are bounding, and
what we need from it is exactly the time until the next token (the
``Retry-After``).  The limits are data (`GatewayLimits`, from the
environment by `GatewayLimits.from_env`), stated in one place.
"""

from __future__ import annotations

import io
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from safebus.errors import ConfigError

__all__ = ["BUSY_RESPONSE", "Admission", "DeadlineReader", "GatewayLimits", "TokenBuckets"]


@dataclass(frozen=True, kw_only=True)
class GatewayLimits:
    """What one gateway process allows; each field can be set by an environment variable (`ENVIRONMENT`)."""

    max_connections: int = 64
    """Connections served at once (each holds one thread); more are answered 503 at once."""
    max_connections_per_source: int = 32
    """Of those, from one source address: one noisy client cannot take them all."""
    request_timeout_s: float = 15.0
    """The whole request (line, headers, body) must arrive within this; a slow client is cut off (408 or close)."""
    keepalive_idle_s: float = 5.0
    """How long a kept-alive connection may sit idle before its next request."""
    max_requests_per_connection: int = 1000
    """After this many, the connection is closed (the client reconnects)."""
    rate_per_s: float = 50.0
    """Sustained requests per second per credential."""
    burst: int = 100
    """Requests a credential may send at once after a quiet spell (the bucket's size)."""

    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "max_connections": "SAFEBUS_GATEWAY_MAX_CONNECTIONS",
        "max_connections_per_source": "SAFEBUS_GATEWAY_MAX_CONNECTIONS_PER_SOURCE",
        "request_timeout_s": "SAFEBUS_GATEWAY_REQUEST_TIMEOUT_S",
        "keepalive_idle_s": "SAFEBUS_GATEWAY_KEEPALIVE_S",
        "max_requests_per_connection": "SAFEBUS_GATEWAY_MAX_REQUESTS_PER_CONNECTION",
        "rate_per_s": "SAFEBUS_GATEWAY_RATE_PER_S",
        "burst": "SAFEBUS_GATEWAY_BURST",
    }

    def __post_init__(self) -> None:
        """Refuse limits that would not serve anyone (ConfigError)."""
        for spec in fields(self):
            if getattr(self, spec.name) <= 0:
                raise ConfigError(f"gateway limit {spec.name} must be positive")
        if self.max_connections_per_source > self.max_connections:
            raise ConfigError("max_connections_per_source cannot exceed max_connections")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayLimits:
        """The defaults, with any ``SAFEBUS_GATEWAY_*`` variable set in `env` (default the process's)."""
        env = os.environ if env is None else env
        given: dict[str, float | int] = {}
        for spec in fields(cls):
            text = env.get(cls.ENVIRONMENT[spec.name], "").strip()
            if text:
                kind = int if spec.type in ("int", int) else float
                try:
                    given[spec.name] = kind(text)
                except ValueError:
                    raise ConfigError(f"{cls.ENVIRONMENT[spec.name]} must be a number, not {text!r}") from None
        return cls(**given)  # type: ignore[arg-type]


_BUSY_BODY = b'{"error": "busy", "message": "too many connections at once; retry in a moment"}'
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nServer: safebus-gateway\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\nRetry-After: 1\r\n"
                 b"Cache-Control: no-store\r\nConnection: close\r\n\r\n" + _BUSY_BODY)
"""What a connection over the cap gets, written by the accepting thread: it never has a thread of its own."""


class Admission:
    """Counts connections in total and per source; `admit` says whether one more may have a thread."""

    def __init__(self, limits: GatewayLimits) -> None:
        """Admit up to the caps in `limits`."""
        self._limits = limits
        self._lock = threading.Lock()
        self._total = 0
        self._by_source: dict[str, int] = {}
        self.refused = 0

    def admit(self, source: str) -> bool:
        """Take a slot for a connection from `source`, or return False (over a cap: answer 503)."""
        with self._lock:
            mine = self._by_source.get(source, 0)
            if self._total >= self._limits.max_connections or mine >= self._limits.max_connections_per_source:
                self.refused += 1
                return False
            self._total += 1
            self._by_source[source] = mine + 1
            return True

    def release(self, source: str) -> None:
        """Give back the slot of a finished connection from `source`."""
        with self._lock:
            self._total -= 1
            left = self._by_source.get(source, 1) - 1
            if left > 0:
                self._by_source[source] = left
            else:
                self._by_source.pop(source, None)

    @property
    def in_use(self) -> int:
        """Connections being served now."""
        with self._lock:
            return self._total


class DeadlineReader(io.RawIOBase):
    """
    A socket's receiving side in which every read ends by one deadline (`deadline`, a `time.monotonic` value).

    Each ``recv`` waits only for the time left, so a client that trickles
    bytes cannot stretch a request past its deadline; a read after it raises
    `TimeoutError`.  Wrap it in `io.BufferedReader` for ``readline``.
    """

    def __init__(self, sock: socket.socket) -> None:
        """Read from `sock`; no deadline until one is set."""
        super().__init__()
        self._sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Receive into `buffer` before the deadline; 0 at end of stream; TimeoutError once it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left if left != math.inf else None)
        return self._sock.recv_into(buffer)


class TokenBuckets:
    """
    One token bucket per key (a credential id): `rate_per_s` tokens a second, at most `burst` saved up.

    Memory is one small entry per key ever seen; the gateway takes from it
    only for authenticated credentials.
    """

    def __init__(self, *, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        """Fill each new bucket to `burst`."""
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 if there was one, else the seconds until there will be."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate

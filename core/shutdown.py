"""
SIGTERM ends every worker within a bounded time, in any state (docs/adr/0003).

A worker stops gracefully when it can: the signal sets a stop event, the loop
finishes its batch, commits and closes.  But a graceful stop can stall for
minutes when the broker is away: librdkafka's ``close()`` and ``flush()``, and
Faust's own shutdown, wait for a broker that does not answer.  An operator (or
systemd, or a test) that sends SIGTERM must be able to count on the process
being gone, so a watchdog hard-exits `GRACE_S` after the first signal if the
graceful path has not finished by then.  A second signal exits at once.

Hard-exiting is safe here for the same reason a kill -9 is (tested in
tests/integration/test_kill_and_restart.py): stores commit in transactions,
offsets are committed only after outputs are durable, and every output has a
deterministic id, so whatever was in flight is redone on restart and
deduplicated by its receiver.

Why a wakeup file descriptor and a thread, not only a Python signal handler:
CPython runs Python-level handlers in the main thread, between bytecodes, so
a main thread blocked inside librdkafka would not even start the grace timer.
`signal.set_wakeup_fd` makes the C-level handler write the signal number to a
socket at once; the watchdog thread reads it and arms the timer whatever the
main thread is doing.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterable

from safebus.logs import get_logger

__all__ = ["GRACE_S", "STOP_SIGNALS", "hard_exit_later", "stop_on_signals"]

_log = get_logger("shutdown")

GRACE_S = 7.0
"""How long a graceful stop may take after SIGTERM before the process exits anyway (within the 10 s promised)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(*, grace_s: float = GRACE_S, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> threading.Event:
    """
    Return an event set by the first of `signals`, and arm a hard exit `grace_s` later.

    Call once, from the main thread, before the worker starts its loop.  The
    process exits with ``128 + signal number`` if it is still running when
    the grace period ends, or immediately on a second signal.
    """
    stop = threading.Event()
    wanted = frozenset(int(s) for s in signals)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    for signum in wanted:
        # The Python-level handler only has to exist (so the default action does not kill at once)
        # and to set the event when the main thread gets to run it; the watchdog does the rest.
        signal.signal(signum, lambda *_: stop.set())
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader, writer, stop, wanted, grace_s), name="shutdown-watchdog",
                     daemon=True).start()
    return stop


def _watch(reader: socket.socket, writer: socket.socket, stop: threading.Event, wanted: frozenset[int],
           grace_s: float) -> None:
    """Wait for a stop signal's byte; set `stop`; hard-exit if the process outlives the grace period."""
    _ = writer  # kept referenced: the wakeup fd must stay open as long as the process lives
    signum = _next_signal(reader, wanted, timeout_s=None)
    if signum is None:
        return
    stop.set()
    _log.info("stop_requested", signal=signal.Signals(signum).name, grace_s=grace_s)
    deadline = time.monotonic() + grace_s
    again = _next_signal(reader, wanted, timeout_s=grace_s, deadline=deadline)
    if again is not None:
        _log.warning("stop_forced", signal=signal.Signals(again).name)
        os._exit(128 + signum)
    _exit_stalled(signum, grace_s)


def _next_signal(reader: socket.socket, wanted: frozenset[int], *, timeout_s: float | None,
                 deadline: float | None = None) -> int | None:
    """
    The next of `wanted` on the wakeup socket (other handled signals write there too), or None.

    None when the socket closes or, with a `deadline`, when it passes first.
    """
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            reader.settimeout(left)
        else:
            reader.settimeout(timeout_s)
        try:
            got = reader.recv(1)
        except TimeoutError:
            return None
        if not got:
            return None
        if got[0] in wanted:
            return got[0]


def _exit_stalled(signum: int, grace_s: float) -> None:
    _log.warning("graceful_stop_stalled_exiting", grace_s=grace_s)
    os._exit(128 + signum)


def hard_exit_later(signum: int, *, grace_s: float = GRACE_S) -> None:
    """
    Exit the process with ``128 + signum`` `grace_s` from now, from a daemon thread.

    For a signal handler someone else installed (Faust's worker): the graceful
    stop runs as usual and this only bounds it.
    """
    def later() -> None:
        time.sleep(grace_s)
        _exit_stalled(signum, grace_s)

    threading.Thread(target=later, name="shutdown-watchdog", daemon=True).start()

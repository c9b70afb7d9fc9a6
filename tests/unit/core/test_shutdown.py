"""SIGTERM ends a worker within its grace period whatever it is doing (docs/adr/0003)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

_WORKER = textwrap.dedent("""
    import sys, time
    from safebus.shutdown import stop_on_signals
    stop = stop_on_signals(grace_s=1.0)
    print("ready", flush=True)
    if sys.argv[1] == "graceful":
        stop.wait()
        sys.exit(0)
    while True:          # a stop that stalls: this loop never looks at the event
        time.sleep(0.1)
""")


def _start(mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", _WORKER, mode], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _stopped_after(process: subprocess.Popen[str], *signals: signal.Signals) -> tuple[int, float]:
    started = time.monotonic()
    for signum in signals:
        process.send_signal(signum)
        time.sleep(0.1)
    code = process.wait(timeout=10)
    return code, time.monotonic() - started


def test_a_worker_that_stops_gracefully_exits_normally() -> None:
    """The stop event is set by SIGTERM and a loop that honours it exits 0, well inside the grace period."""
    code, took = _stopped_after(_start("graceful"), signal.SIGTERM)
    assert code == 0
    assert took < 1.0


def test_a_stalled_stop_is_ended_by_the_watchdog() -> None:
    """A worker stuck after SIGTERM is gone once the grace period passes, with 128 + SIGTERM."""
    code, took = _stopped_after(_start("stalled"), signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert 0.9 < took < 5.0


def test_a_second_signal_exits_at_once() -> None:
    """An operator who presses Ctrl-C twice does not wait out the grace period."""
    code, took = _stopped_after(_start("stalled"), signal.SIGINT, signal.SIGINT)
    assert code == 128 + signal.SIGINT
    assert took < 0.9

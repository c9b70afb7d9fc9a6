"""``--health-port`` as an operator meets it: a port already taken is a clear setting error, not a traceback."""

from __future__ import annotations

import socket

import pytest

from safebus.app.cli_health import worker_health
from safebus.errors import ConfigError


def test_a_health_port_already_in_use_is_refused_naming_the_option_and_the_worker() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"--health-port {port}: cannot serve sequencer's health"), \
                worker_health("sequencer", port):
            pass


def test_without_a_port_nothing_is_served() -> None:
    with worker_health("sequencer", None) as health:
        assert health is None

"""The local broker's configuration and lifecycle helpers, without starting Java."""

from __future__ import annotations

from pathlib import Path

import pytest

from safebus.deploy.broker import LocalBroker, _server_properties, free_port
from safebus.deploy.topics_admin import Replication
from safebus.errors import ConfigError


def test_broker_listens_on_loopback_only_with_auto_creation_off(tmp_path: Path) -> None:
    """The generated configuration never binds all interfaces and never auto-creates topics."""
    text = _server_properties(port=19092, controller_port=19093, data=tmp_path)
    settings = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert "0.0.0.0" not in text  # noqa: S104 - asserting its absence
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert settings["offsets.topic.replication.factor"] == "1"


def test_free_port_is_bindable() -> None:
    """A chosen port is a real, currently free port."""
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_status_and_down_of_a_never_started_broker(tmp_path: Path) -> None:
    """Status and down are safe before anything was started."""
    broker = LocalBroker(state_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert broker.status().running is False
    assert broker.down().running is False
    assert broker.status().describe().startswith("stopped")


def test_compose_file_runs_the_same_kafka_release_without_auto_creation() -> None:
    """Docker users get the same broker version and the same no-auto-creation rule."""
    from importlib import resources

    from safebus.deploy.broker import KAFKA_VERSION

    root = Path(__file__).resolve().parents[3]
    compose = (root / "deploy" / "compose.yaml").read_text()
    assert f"image: apache/kafka:{KAFKA_VERSION}" in compose
    assert 'KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"' in compose
    assert '"127.0.0.1:9092:9092"' in compose
    pom = resources.files("safebus.deploy").joinpath("kafka/pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


def test_a_restarted_broker_keeps_the_ports_it_remembers() -> None:
    """Clients that learned the address keep working after down/up: the remembered ports are reused."""
    from safebus.deploy.broker import choose_ports

    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    remembered: dict[str, object] = {"pid": None, "bootstrap": f"127.0.0.1:{port}", "controller_port": controller}
    assert choose_ports(remembered) == (port, controller)


def test_a_taken_port_means_new_ports_and_says_so() -> None:
    """Only when something else holds a remembered port are both chosen afresh, and that is logged."""
    import socket

    from structlog.testing import capture_logs

    from safebus.deploy.broker import choose_ports

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        controller = free_port()
        with capture_logs() as logs:
            port, controller_port = choose_ports({"bootstrap": f"127.0.0.1:{taken}", "controller_port": controller})
    assert taken not in (port, controller_port)
    assert port != controller_port
    assert [entry["event"] for entry in logs] == ["broker_ports_changed"]
    assert logs[0]["previous_bootstrap"] == f"127.0.0.1:{taken}"


def test_a_first_start_picks_two_distinct_free_ports() -> None:
    """Nothing remembered (a new state directory): two different free ports."""
    from safebus.deploy.broker import choose_ports

    port, controller_port = choose_ports({})
    assert port != controller_port


def test_replication_follows_the_size_of_the_cluster() -> None:
    """Three copies, two in sync, once there are three brokers: acks=all then survives any one broker down."""
    assert Replication.for_cluster(1) == Replication(factor=1, min_insync=1)
    assert Replication.for_cluster(3) == Replication(factor=3, min_insync=2)
    assert Replication.for_cluster(5) == Replication(factor=3, min_insync=2)


def test_an_operators_replication_is_used_and_a_bad_one_refused_by_name() -> None:
    """A five-broker managed cluster may keep more copies; a minimum above the copies could never be met."""
    assert Replication.configured({}) is None, "unset: follow the cluster's size"
    assert Replication.configured({"SAFEBUS_REPLICATION_FACTOR": "5", "SAFEBUS_MIN_INSYNC_REPLICAS": "3"}) == \
        Replication(factor=5, min_insync=3)
    assert Replication.configured({"SAFEBUS_REPLICATION_FACTOR": "3"}) == Replication(factor=3, min_insync=2)
    for env, named in (({"SAFEBUS_REPLICATION_FACTOR": "three"}, "SAFEBUS_REPLICATION_FACTOR"),
                       ({"SAFEBUS_REPLICATION_FACTOR": "0"}, "SAFEBUS_REPLICATION_FACTOR"),
                       ({"SAFEBUS_REPLICATION_FACTOR": "2", "SAFEBUS_MIN_INSYNC_REPLICAS": "3"}, "more than"),
                       ({"SAFEBUS_MIN_INSYNC_REPLICAS": "2"}, "needs SAFEBUS_REPLICATION_FACTOR")):
        with pytest.raises(ConfigError, match=named):
            Replication.configured(env)

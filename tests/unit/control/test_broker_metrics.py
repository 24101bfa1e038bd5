"""control-server's metrics of the local brokers, from what the engines report (pure logic)."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from control.server.metrics_feed import MetricsFeed
from control.settings import Settings


def test_broker_up_and_restarts_come_from_control_status() -> None:
    records = [
        {"aspect": "process", "service": "kafka", "node": "n1", "state": "running", "restarts": 2},
        {"aspect": "process", "service": "kafka-2", "node": "n2", "state": "failed", "restarts": 1},
        {"aspect": "process", "service": "smtp-server", "node": "n1", "state": "running", "restarts": 0},
    ]
    plane = SimpleNamespace(status=SimpleNamespace(snapshot=lambda: records))
    MetricsFeed(Settings(), plane)._brokers()  # type: ignore[arg-type]
    up = {"node": "n1", "broker": "kafka"}
    assert REGISTRY.get_sample_value("mailgate_broker_up", up) == 1
    assert REGISTRY.get_sample_value("mailgate_broker_restarts", up) == 2
    assert REGISTRY.get_sample_value("mailgate_broker_up", {"node": "n2", "broker": "kafka-2"}) == 0
    assert REGISTRY.get_sample_value("mailgate_broker_up", {"node": "n1", "broker": "smtp-server"}) is None

"""The engine on the real broker keeps the real maildepot archiver and connector running: stopped
on purpose through the control plane, each is started again after the grace period."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.broker.topics import ensure_topics
from control.engine.services import SERVICES
from control.engine.supervisor import ServiceSpec
from control.server.auth import Principal
from control.server.plane import ControlPlane
from core.settings import ControlSettings, KafkaSettings, Settings
from tests.integration.control.conftest import wait_until
from tests.integration.control.test_control_engine_policies import RunningEngine, svc
from tests.support.kafka import Broker
from tests.support.ports import free_port

ADMIN = Principal("admin", "alice")
NAMES = ("maildepot-archiver", "maildepot-connector")


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(node="node-arch", home=tmp_path,
                 kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                     topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=1),
                 control=ControlSettings(grace_restart_s=2.0, status_interval_s=1.0, metrics_port_base=0,
                                         remote_support_port=free_port(), tokens={"admin:alice": "x-token"}))
    ensure_topics(s)
    yield s


def test_archiver_and_connector_are_started_again_after_the_grace_period(settings: Settings) -> None:
    assert all(SERVICES[name].restart_after_stop for name in NAMES)
    specs = [ServiceSpec(name, "-", restart_after_stop=SERVICES[name].grace_restart) for name in NAMES]
    plane = ControlPlane(settings).start()
    try:
        with RunningEngine(settings, specs) as engine:
            first = {n: wait_until(f"{n} running", lambda n=n: svc(engine, n).proc) for n in NAMES}
            wait_until("the archiver made its store", lambda: (settings.home / "archive" / "index.sqlite").exists(),
                       timeout=60)
            wait_until("node reported", lambda: "node-arch" in plane.status.nodes())
            for name in NAMES:
                plane.set_process(ADMIN, name, "", "stopped")
            for name in NAMES:
                wait_until(f"{name} stopped", lambda n=name: svc(engine, n).state == "stopped")
                assert first[name].poll() is not None  # its process really ended
            for name in NAMES:
                again = wait_until(f"{name} started again", lambda n=name: svc(engine, n).proc, timeout=15)
                assert again.pid != first[name].pid
                wait_until(f"{name} running again", lambda n=name: svc(engine, n).state == "running", timeout=15)
    finally:
        plane.stop()

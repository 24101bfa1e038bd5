"""The engine's policies on the real broker, with the engine in this process and cheap child
processes: a service that may not stay stopped is started again after the grace period; remote
support runs only when an administrator starts it, for its duration, and stays stopped across
an engine restart; its diagnostics endpoint answers administrators only."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.broker.topics import ensure_topics
from control.engine.services import SERVICES
from control.engine.supervisor import Engine, ServiceSpec
from control.server.auth import Principal
from control.server.plane import ControlPlane
from core.control_channel import PROCESS
from core.settings import ControlSettings, KafkaSettings, Settings
from tests.integration.control.conftest import ADMIN_TOKEN, USER, USER_TOKEN, diagnostics, listening, wait_until
from tests.support.kafka import Broker
from tests.support.ports import free_port

ADMIN = Principal("admin", "alice")
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


class RunningEngine:
    def __init__(self, settings: Settings, specs: list[ServiceSpec]) -> None:
        c = settings.control
        env = {"MAILGATE_NODE": settings.node, "MAILGATE_HOME": str(settings.home),
               "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": settings.bootstrap_servers,
               "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
               "MAILGATE_CONTROL__REMOTE_SUPPORT_PORT": str(c.remote_support_port),
               "MAILGATE_CONTROL__TOKENS": ",".join(f"{k}={v.get_secret_value()}" for k, v in c.tokens.items())}
        self.engine = Engine(specs, env=env, settings=settings)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.engine.run, kwargs={"until": self.done.is_set}, daemon=True)

    def __enter__(self) -> Engine:
        self.thread.start()
        wait_until("engine linked", lambda: self.engine.link is not None, timeout=30)
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def svc(engine: Engine, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in engine.services if s.spec.name == name)


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(node="node-p", home=tmp_path,
                 kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                     topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=1),
                 control=ControlSettings(grace_restart_s=2.0, status_interval_s=1.0,
                                         remote_support_port=free_port(), metrics_port_base=0,
                                         tokens={"admin:alice": ADMIN_TOKEN, f"user:{USER}": USER_TOKEN}))
    ensure_topics(s)
    yield s


@pytest.fixture
def plane(settings: Settings) -> Iterator[ControlPlane]:
    p = ControlPlane(settings).start()
    yield p
    p.stop()


def test_spam_filter_is_started_again_after_the_grace_period(settings: Settings, plane: ControlPlane) -> None:
    # spam-filter is one of the services that may not stay stopped (as are the maildepot archiver and connector)
    spam_filter = ServiceSpec("spam-filter", "-", SLEEP, restart_after_stop=SERVICES["spam-filter"].grace_restart)
    plain = ServiceSpec("smtp-client", "-", SLEEP)
    with RunningEngine(settings, [spam_filter, plain]) as engine:
        first = wait_until("spam-filter running", lambda: svc(engine, "spam-filter").proc)
        wait_until("node reported", lambda: "node-p" in plane.status.nodes())
        plane.set_process(ADMIN, "spam-filter", "", "stopped")
        plane.set_process(ADMIN, "smtp-client", "", "stopped")
        wait_until("spam-filter stopped", lambda: svc(engine, "spam-filter").state == "stopped")
        assert first.poll() is not None
        again = wait_until("spam-filter started again", lambda: svc(engine, "spam-filter").proc, timeout=10)
        assert again.pid != first.pid
        # the plane follows control.desired in a thread: until it reads the override, it has the stop
        desired = wait_until("the engine wrote its override", lambda: (d := plane.desired.effective(
            PROCESS, "node-p", "spam-filter")) and d["actor"].startswith("engine@") and d)
        assert desired["state"] == "running" and desired["actor"] == "engine@node-p"
        assert svc(engine, "smtp-client").state == "stopped"  # no grace for the others
        assert svc(engine, "smtp-client").proc is None


def test_remote_support_runs_only_when_asked_for_its_duration(settings: Settings, plane: ControlPlane) -> None:
    port = settings.control.remote_support_port
    remote = ServiceSpec("remote-support", "-", auto_start=False)
    with RunningEngine(settings, [remote]) as engine:
        wait_until("node reported", lambda: "node-p" in plane.status.nodes())
        assert svc(engine, "remote-support").proc is None  # never started by itself
        plane.set_process(ADMIN, "remote-support", "node-p", "running", duration_s=6)
        wait_until("diagnostics answer", lambda: diagnostics(port, ADMIN_TOKEN)[0] == 200
                   if listening(port) else None, timeout=20)
        status, body = diagnostics(port, ADMIN_TOKEN)
        assert body["node"] == "node-p" and any(s["service"] == "remote-support" for s in body["services"])
        assert diagnostics(port, USER_TOKEN)[0] == 403
        assert diagnostics(port, None)[0] == 401
        assert diagnostics(port, "wrong")[0] == 401
        wait_until("stopped when its time ran out", lambda: svc(engine, "remote-support").state == "stopped",
                   timeout=15)
        assert not listening(port)
        plane.set_process(ADMIN, "remote-support", "", "running", duration_s=600)
        wait_until("running again", lambda: listening(port), timeout=20)
    assert not listening(port)
    with RunningEngine(settings, [remote]) as engine:  # the engine restarts
        desired = wait_until("the engine refused the old start", lambda: (d := plane.desired.effective(
            PROCESS, "node-p", "remote-support")) and d["state"] == "stopped" and d, timeout=15)
        assert "never started automatically" in desired["reason"]
        assert svc(engine, "remote-support").proc is None and not listening(port)


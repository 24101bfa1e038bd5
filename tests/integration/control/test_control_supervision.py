"""The engine's policies on a real `mailgate up` node, steered through gRPC: the real
spam-filter killed and brought back; the real archiver stopped and started again after
the grace period while smtp-server stays stopped; a service that keeps crashing shows
as failed; remote support runs for its duration only and stays stopped across an
engine restart (`mailgate up` again on the same broker and topic prefix)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import grpc
import pytest

from control.proto.rpc import pb
from core.control_channel import PROCESS, desired_key
from schemas.topics import CONTROL_DESIRED
from tests.integration.control.conftest import (
    ADMIN_TOKEN,
    NODE,
    Node,
    diagnostics,
    listening,
    mailgate,
    running_node,
    wait_all_running,
    wait_until,
)
from tests.integration.control.test_control_services import code_of, refused, send
from tests.support.kafka import Broker
from tests.support.topics import read_topic

STATE = pb.ServiceState
GRACE_S = 6.0


@pytest.fixture(scope="module")
def node(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(broker, tmp_path_factory.mktemp("supervised-node"),
                      MAILGATE_CONTROL__GRACE_RESTART_S=str(GRACE_S)) as n:
        yield n


def running_again(node: Node, name: str, old_pid: int, timeout: float = 30) -> pb.ServiceInfo:
    return wait_until(f"{name} running again with a new pid", lambda: (s := node.service(name)).state
                      == STATE.SERVICE_STATE_RUNNING and s.pid not in (0, old_pid) and s, timeout=timeout)


def test_killed_spam_filter_is_brought_back(node: Node) -> None:
    old = node.service("spam-filter")
    assert old.state == STATE.SERVICE_STATE_RUNNING and old.pid > 0
    os.kill(old.pid, signal.SIGKILL)
    new = running_again(node, "spam-filter", old.pid)
    assert new.restarts == old.restarts + 1 and new.desired == "running"
    before = len(node.sink.mails)
    asyncio.run(send(node.gateway.smtp_port, 2, first=600))  # mail.in → the new spam-filter → delivered
    node.sink.wait_for(before + 2, timeout=60)


def test_stopped_archiver_starts_again_after_the_grace_period(node: Node) -> None:
    old = node.service("maildepot-archiver")
    asked = time.monotonic()
    node.admin("StopService", pb.ServiceRequest(name="maildepot-archiver", reason="test"))
    node.admin("StopService", pb.ServiceRequest(name="smtp-server", reason="test"))
    stopped = wait_until("the archiver reported stopped", lambda: (s := node.service("maildepot-archiver")).state
                         == STATE.SERVICE_STATE_STOPPED and s, timeout=GRACE_S, every=0.1)
    assert stopped.pid == 0 and stopped.desired == "stopped"
    new = running_again(node, "maildepot-archiver", old.pid, timeout=GRACE_S + 30)
    assert time.monotonic() - asked >= GRACE_S
    assert new.desired == "running"  # the engine wrote its override into control.desired
    smtp = node.service("smtp-server")  # no grace period for the others
    assert smtp.state == STATE.SERVICE_STATE_STOPPED and smtp.desired == "stopped" and smtp.pid == 0
    assert refused(node.gateway.smtp_port)
    node.admin("StartService", pb.ServiceRequest(name="smtp-server"))
    wait_until("smtp-server listening again", lambda: not refused(node.gateway.smtp_port))


def test_a_service_that_keeps_crashing_is_failed(node: Node) -> None:
    # an address this host does not have: smtp-server cannot bind and exits at every start
    node.admin("SetConfig", pb.SetConfigRequest(key="smtp_server.host", value="192.0.2.1", reason="test"))
    try:
        node.admin("RestartService", pb.ServiceRequest(name="smtp-server"))
        failed = wait_until("smtp-server failed after crashing again", lambda: (s := node.service("smtp-server"))
                            .state == STATE.SERVICE_STATE_FAILED and s.restarts >= 2 and s, timeout=60, every=0.1)
        assert failed.pid == 0 and failed.desired == "running"
        assert "exited with 1; restarting in" in failed.detail
    finally:
        node.admin("SetConfig", pb.SetConfigRequest(key="smtp_server.host", reset=True))
    wait_until("smtp-server listening once the setting is back", lambda: not refused(node.gateway.smtp_port),
               timeout=40)
    assert wait_until("smtp-server reported running", lambda: node.service("smtp-server").state
                      == STATE.SERVICE_STATE_RUNNING)


def test_remote_support_for_its_duration_and_not_after_an_engine_restart(node: Node) -> None:
    port = node.remote_port
    code, text = code_of(lambda: node.admin("StartService", pb.ServiceRequest(name="remote-support")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "give a duration" in text
    assert node.service("remote-support").state == STATE.SERVICE_STATE_STOPPED and not listening(port)

    # 25 s: room for a loaded machine (CI) to start it and report it before the time runs out.
    node.admin("StartService", pb.ServiceRequest(name="remote-support", duration={"seconds": 25}))
    wait_until("remote support answering", lambda: listening(port) and diagnostics(port, ADMIN_TOKEN)[0] == 200,
               timeout=15)
    running = wait_until("remote support reported running", lambda: (s := node.service("remote-support")).state
                         == STATE.SERVICE_STATE_RUNNING and s, timeout=10)
    assert running.desired == "running" and time.time() < running.expires.ToSeconds() <= time.time() + 25
    wait_until("remote support stopped when its time ran out", lambda: not listening(port) and node.service(
        "remote-support").state == STATE.SERVICE_STATE_STOPPED, timeout=40)
    assert node.service("remote-support").desired == "stopped"

    started = mailgate(node, "services", "start", "remote-support", "--duration", "10m")
    assert started.returncode == 0, started.stderr
    assert "start of remote-support on every node asked until" in started.stdout and "s left)" in started.stdout
    wait_until("remote support listening", lambda: listening(port), timeout=20)
    assert node.gateway.stop() == 0  # the engine restarts, well within the 10 minutes
    assert not listening(port)
    restarted_ms = int(time.time() * 1000)
    node.gateway.start()
    node.reconnect()
    wait_all_running(node)
    remote = wait_until("remote support reported by the new engine", lambda: (s := node.service("remote-support"))
                        .since.ToMilliseconds() >= restarted_ms and s, timeout=20)
    assert remote.state == STATE.SERVICE_STATE_STOPPED and remote.pid == 0 and remote.desired == "stopped"
    key = desired_key(PROCESS, NODE, "remote-support").encode()
    override = [r.value for r in read_topic(node.gateway.settings(), f"{node.gateway.prefix}{CONTROL_DESIRED}")
                if r.key == key][-1]  # the new engine wrote "stopped" over the old start
    assert (override["state"], override["actor"]) == ("stopped", f"engine@{NODE}")
    assert "never started automatically" in override["reason"]
    time.sleep(2)  # a few engine ticks later: still not started
    assert not listening(port) and node.service("remote-support").state == STATE.SERVICE_STATE_STOPPED

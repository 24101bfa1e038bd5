"""The control plane across two nodes: two `mailgate up` engines on one broker and one
topic prefix (one cluster), steered through either node's control server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from control.engine.services import SERVICES
from control.proto.rpc import pb
from tests.integration.control.conftest import Node, env_for, free_port_run, wait_until
from tests.integration.control.test_control_services import refused, send
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.sink import Sink

STATE = pb.ServiceState


def start_node(name: str, broker: Broker, home: Any, sink: Sink, prefix: str | None) -> Node:
    control_port, remote_port, metrics_base = free_port(), free_port(), free_port_run(len(SERVICES))
    env = {**env_for(control_port, metrics_base, remote_port), "MAILGATE_NODE": name}
    gateway = Gateway(broker.bootstrap_servers, home, sink.address, prefix=prefix, **env).start()
    return Node(gateway, sink, control_port, metrics_base, remote_port)


def states(node: Node, service: str) -> dict[str, int]:
    """The state of ``service`` on every node, as ListServices (all nodes) reports it."""
    reply = node.admin("ListServices", pb.ListServicesRequest())
    return {s.node: s.state for s in reply.services if s.name == service}


@pytest.fixture(scope="module")
def cluster(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    with Sink(free_port()) as sink:
        a = start_node("node-a", broker, tmp_path_factory.mktemp("node-a"), sink, None)
        try:
            b = start_node("node-b", broker, tmp_path_factory.mktemp("node-b"), sink, a.gateway.prefix)
        except BaseException:
            a.gateway.stop()
            raise
        try:
            wait_until("smtp-server running on both nodes", lambda: states(a, "smtp-server")
                       == {"node-a": STATE.SERVICE_STATE_RUNNING, "node-b": STATE.SERVICE_STATE_RUNNING}, timeout=90)
            yield a, b
        except AssertionError:
            print(a.gateway.log(), b.gateway.log())
            raise
        finally:
            for n in (b, a):
                n.channel.close()
                n.gateway.stop()


def test_stop_on_every_node_then_start_from_the_other(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    a.admin("StopService", pb.ServiceRequest(name="smtp-server", reason="maintenance"))  # node "": every node
    wait_until("smtp-server stopped on both nodes", lambda: set(states(a, "smtp-server").values())
               == {STATE.SERVICE_STATE_STOPPED} and len(states(a, "smtp-server")) == 2)
    assert refused(a.gateway.smtp_port) and refused(b.gateway.smtp_port)
    b.admin("StartService", pb.ServiceRequest(name="smtp-server"))  # the other node's control server
    wait_until("both listening again", lambda: not refused(a.gateway.smtp_port) and not refused(b.gateway.smtp_port))
    wait_until("smtp-server running on both nodes, as each node's control server sees it", lambda: all(
        set(states(n, "smtp-server").values()) == {STATE.SERVICE_STATE_RUNNING} for n in (a, b)))


def test_stop_on_one_node_only(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    a.admin("StopService", pb.ServiceRequest(name="smtp-server", node="node-b"))
    wait_until("node-b's smtp-server stopped", lambda: states(a, "smtp-server")
               == {"node-a": STATE.SERVICE_STATE_RUNNING, "node-b": STATE.SERVICE_STATE_STOPPED})
    assert refused(b.gateway.smtp_port) and not refused(a.gateway.smtp_port)
    before = len(a.sink.mails)
    asyncio.run(send(a.gateway.smtp_port, 3, first=700))  # the cluster still takes mail through node-a
    a.sink.wait_for(before + 3, timeout=60)
    a.admin("StartService", pb.ServiceRequest(name="smtp-server", node="node-b"))
    wait_until("node-b listening again", lambda: not refused(b.gateway.smtp_port))


def test_mail_through_either_node_is_delivered_once(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    before = len(a.sink.mails)
    asyncio.run(send(a.gateway.smtp_port, 5, first=800))
    asyncio.run(send(b.gateway.smtp_port, 5, first=810))
    got = a.sink.wait_for(before + 10, timeout=60)
    subjects = sorted(m.data.split(b"Subject: ")[1].split(b"\n")[0].strip() for m in got[before:])
    assert subjects == sorted(f"paused {i}".encode() for i in [*range(800, 805), *range(810, 815)])

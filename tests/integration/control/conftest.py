"""The control plane on the real broker: one `mailgate up` node (with control-server) per module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest

from control.rpc import pb, pb_grpc
from control.services import SERVICES
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.sink import Sink

ADMIN_TOKEN = "admin-secret-4f1c"
USER_TOKEN = "user-secret-9a2b"
USER = "bob@example.com"
NODE = "node-a"
T = TypeVar("T")


def free_port_run(count: int) -> int:
    """A base port with ``count`` free ports from it (for the services' /metrics)."""
    import socket

    for _ in range(50):
        base = free_port()
        if base + count >= 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports")


class Node:
    """A gateway node and gRPC stubs for it."""

    def __init__(self, gateway: Gateway, sink: Sink, control_port: int, metrics_base: int,
                 remote_port: int) -> None:
        self.gateway, self.sink = gateway, sink
        self.address = f"127.0.0.1:{control_port}"
        self.metrics_base, self.remote_port = metrics_base, remote_port
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.ControlStub(self.channel)

    def admin(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")], timeout=20)

    def user(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, metadata=[("authorization", f"Bearer {USER_TOKEN}")], timeout=20)

    def services(self) -> dict[str, Any]:
        reply = self.admin("ListServices", pb.ListServicesRequest(node=NODE))
        return {s.name: s for s in reply.services}

    def service(self, name: str) -> Any:
        return self.services()[name]


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def env_for(control_port: int, metrics_base: int, remote_port: int, **extra: str) -> dict[str, str]:
    return {
        "MAILGATE_NODE": NODE,
        "MAILGATE_CONTROL__PORT": str(control_port),
        "MAILGATE_CONTROL__TOKENS": f"admin:alice={ADMIN_TOKEN},user:{USER}={USER_TOKEN}",
        "MAILGATE_CONTROL__STATUS_INTERVAL_S": "1",
        "MAILGATE_CONTROL__METRICS_PORT_BASE": str(metrics_base),
        "MAILGATE_CONTROL__REMOTE_SUPPORT_PORT": str(remote_port),
        **extra,
    }


@pytest.fixture(scope="module")
def node(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    control_port, remote_port, metrics_base = free_port(), free_port(), free_port_run(len(SERVICES))
    with Sink(free_port()) as sink:
        gateway = Gateway(broker.bootstrap_servers, tmp_path_factory.mktemp("control-node"), sink.address,
                          **env_for(control_port, metrics_base, remote_port))
        with gateway:
            n = Node(gateway, sink, control_port, metrics_base, remote_port)
            try:
                wait_until("every auto-started service reported running", lambda: all(
                    s.state == pb.SERVICE_STATE_RUNNING for name, s in _services_or_empty(n).items()
                    if name != "remote-support") and len(_services_or_empty(n)) >= 4, timeout=60)
                yield n
            except AssertionError:
                print(gateway.log())
                raise
            finally:
                n.channel.close()


def _services_or_empty(n: Node) -> dict[str, Any]:
    try:
        return n.services()
    except grpc.RpcError:
        return {}

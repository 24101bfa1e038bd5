"""The control plane on the real broker: one `mailgate up` node (with control-server) per module."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from control.engine.services import SERVICES
from control.proto.rpc import pb, pb_grpc
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

    def reconnect(self) -> None:
        """A fresh channel (after control-server restarted; the old one may be in its reconnect backoff)."""
        self.channel.close()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.ControlStub(self.channel)


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def diagnostics(port: int, token: str | None) -> tuple[int, dict[str, object]]:
    """remote-support's GET /diagnostics: the HTTP status and the JSON answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/diagnostics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


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


@contextmanager
def running_node(broker: Broker, home: Path, **extra: str) -> Iterator[Node]:
    """`mailgate up` with control-server on free ports, once every auto-started service runs."""
    control_port, remote_port, metrics_base = free_port(), free_port(), free_port_run(len(SERVICES))
    with Sink(free_port()) as sink:
        gateway = Gateway(broker.bootstrap_servers, home, sink.address,
                          **env_for(control_port, metrics_base, remote_port, **extra))
        with gateway:
            n = Node(gateway, sink, control_port, metrics_base, remote_port)
            try:
                wait_all_running(n)
                yield n
            except AssertionError:
                print(gateway.log())
                raise
            finally:
                n.channel.close()


def wait_all_running(n: Node, timeout: float = 60) -> None:
    wait_until("every auto-started service reported running", lambda: all(
        s.state == pb.SERVICE_STATE_RUNNING for name, s in _services_or_empty(n).items()
        if name != "remote-support") and len(_services_or_empty(n)) >= 4, timeout=timeout)


@pytest.fixture(scope="module")
def node(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(broker, tmp_path_factory.mktemp("control-node")) as n:
        yield n


def mailgate(node: Node, *args: str, token: str | None = ADMIN_TOKEN, port: int | None = None) -> \
        subprocess.CompletedProcess[str]:
    """The real CLI (`mailgate ...`) against the node's control-server."""
    env = {**node.gateway.env, "COLUMNS": "250"}
    env["MAILGATE_CONTROL__TOKEN"] = token or ""
    if token is None:
        env.pop("MAILGATE_CONTROL__TOKEN")
    if port is not None:
        env["MAILGATE_CONTROL__PORT"] = str(port)
    return subprocess.run([sys.executable, "-m", "control.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=node.gateway.home)


def row(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (a rich table as the CLI prints it)."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


def _services_or_empty(n: Node) -> dict[str, Any]:
    try:
        return n.services()
    except grpc.RpcError:
        return {}

"""The integration suite's Kafka: one real broker per session, from one of three backends.

- ``local`` (default): the project's own single-node KRaft broker (control.broker.local),
  on free loopback ports with its data in the session's temp dir.
- ``container``: testcontainers' Kafka container; needs a Docker engine, skipped with
  the reason when none answers.
- ``external``: an existing cluster, used when MAILGATE_KAFKA__BOOTSTRAP_SERVERS is set.

Choose with MAILGATE_TEST_BROKER=local|container (external wins when its servers are set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from control.broker.local import LocalBroker
from control.settings import Settings
from tests.support.ports import free_port

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


@dataclass
class Broker:
    backend: str
    bootstrap_servers: str
    local: LocalBroker | None = None  # set when the suite may stop and start it


def local_broker(data_dir: Path) -> LocalBroker:
    defaults = Settings().broker  # version and jar cache as configured (cached once per machine)
    return LocalBroker(version=defaults.version, data_dir=data_dir, cache_dir=defaults.cache_dir,
                       port=free_port(), controller_port=free_port(), heap="512m")


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers GET /_ping, else why not."""
    import socket
    from urllib.parse import urlparse

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(3)
            try:
                sock.connect(url.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout=3)
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"no Docker engine answers at {host} ({exc}); the container backend needs one"
    if b" 200 " not in answer:
        return f"the Docker engine at {host} did not answer /_ping with 200: {answer!r}"
    return None


@contextmanager
def container_broker() -> Iterator[Broker]:
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        yield Broker("container", kafka.get_bootstrap_server())


@contextmanager
def session_broker(tmp: Path) -> Iterator[Broker]:
    external = os.environ.get("MAILGATE_KAFKA__BOOTSTRAP_SERVERS")
    if external:
        yield Broker("external", external)
        return
    backend = os.environ.get("MAILGATE_TEST_BROKER", "local")
    if backend == "container":
        problem = docker_engine_problem()
        if problem:
            import pytest

            pytest.skip(problem)
        with container_broker() as broker:
            yield broker
        return
    if backend != "local":
        raise ValueError(f"MAILGATE_TEST_BROKER={backend!r}: use local or container")
    broker = local_broker(tmp / "kafka")
    broker.start(say=lambda _m: None)
    try:
        yield Broker("local", broker.bootstrap_servers, broker)
    finally:
        broker.stop()

"""Integration fixtures: one real Kafka broker per session (see tests/support/kafka.py);
each test isolates itself with its own topic prefix and consumer groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.kafka import Broker, session_broker
from tests.support.ports import free_port
from tests.support.sink import Sink


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with session_broker(tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink(free_port()) as s:
        yield s


@pytest.fixture
def gateway(broker: Broker, sink: Sink, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address)
    with gw:
        yield gw

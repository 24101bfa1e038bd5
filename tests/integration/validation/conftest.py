"""Fixtures of the message-validation virus tests: one real clamd per session with the
test signature database (tests/support/clamd.py), and fresh ones for the tests that
stop, freeze or reconfigure theirs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.validation.clamd import ClamdClient
from tests.support.clamd import Clamd
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink


@pytest.fixture(scope="session")
def clamd() -> Iterator[Clamd]:
    with Clamd() as cd:
        yield cd


@pytest.fixture(params=["unix", "tcp"])
def client(request: pytest.FixtureRequest, clamd: Clamd) -> ClamdClient:
    address = clamd.unix_address if request.param == "unix" else clamd.tcp_address
    return ClamdClient(address, scan_timeout_s=30)


@pytest.fixture
def fresh_clamd() -> Iterator[Callable[..., Clamd]]:
    """Starts clamds of the test's own (config overrides as keyword arguments); all stopped after."""
    started: list[Clamd] = []

    def start(**config: str) -> Clamd:
        cd = Clamd(config=config).start()
        started.append(cd)
        return cd

    yield start
    for cd in started:
        cd.stop()


@pytest.fixture
def scanning_gateway(broker: Broker, sink: Sink, clamd: Clamd, tmp_path: Path) -> Iterator[Gateway]:
    """The running gateway (`mailgate up`) scanning with the session's clamd."""
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address,
                 MAILGATE_VALIDATION__VIRUS_SCAN="true", MAILGATE_VALIDATION__CLAMD__ADDRESS=clamd.unix_address)
    with gw:
        yield gw

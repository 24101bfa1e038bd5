"""smtp-server integration fixtures: the server in-process on the session broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.dns import dns_server  # noqa: F401 - registers the session DNS fixture
from tests.support.kafka import Broker
from tests.support.smtp_server import SmtpServer

StartServer = Callable[..., SmtpServer]


@pytest.fixture
def smtp_server(broker: Broker, tmp_path: Path) -> Iterator[StartServer]:
    """start(**smtp_server_settings) → a running SmtpServer, stopped after the test."""
    with ExitStack() as stack:
        def start(**smtp: Any) -> SmtpServer:
            return stack.enter_context(SmtpServer(broker.bootstrap_servers, tmp_path / "home", **smtp))
        yield start

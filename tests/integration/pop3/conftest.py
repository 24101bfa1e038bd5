"""Fixtures of the pop3-proxy tests: one real Dovecot per session (plain+STLS and
POP3S listeners on loopback, its certificate from a trustme CA) and accounts on
fresh mailboxes. The collector tests publish in memory (recording.py); the Kafka
edge (pop3.uidls, control.status, the whole gateway) has tests of its own, each with
its own topic prefix (``kafka_settings``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.broker.topics import ensure_topics
from core.settings import KafkaSettings, Settings
from ingress.pop3.settings import Pop3Account, TlsMode
from tests.support.dovecot import Dovecot, Mailbox
from tests.support.kafka import Broker


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as dc:
        yield dc


@pytest.fixture
def make_account(dovecot: Dovecot) -> Callable[..., Pop3Account]:
    def make(box: Mailbox, tls: TlsMode = "starttls-required", **overrides: Any) -> Pop3Account:
        port = dovecot.pop3s_port if tls == "implicit" else dovecot.plain_port
        fields: dict[str, Any] = dict(name=box.user, host=dovecot.host, port=port, tls=tls,
                                      ca_file=Path(dovecot.ca_file), user=box.user, password=box.password,
                                      recipient=f"{box.user}@example.com", interval_s=60, timeout_s=10)
        fields.update(overrides)
        return Pop3Account(**fields)
    return make


@pytest.fixture
def kafka_settings(broker: Broker) -> Settings:
    """Settings on the session's broker with topics of this test's own."""
    s = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                     topic_prefix=f"t{uuid.uuid4().hex[:8]}."))
    ensure_topics(s)
    return s

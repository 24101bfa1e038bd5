"""smtp-client on the real broker: each test gets its own topics (prefix) and runs the
client in its own event loop, feeding mail.out directly as message-validation would."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from control.broker.topics import ensure_topics
from core.kafka import make_producer
from core.settings import KafkaSettings, Settings, SmtpClientSettings, SmtpServerSettings
from egress.smtp_client.service import SmtpClient
from schemas import default_codec, new_mail_id, pack_message
from schemas.topics import TopicNames
from tests.support.dns import dns_server  # noqa: F401  (the session's loopback DNS server)
from tests.support.kafka import Broker
from tests.support.topics import Record, read_topic


def message(subject: str, sender: str = "sender@origin.test", to: str = "rcpt@dest.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:8], domain="origin.test")
    msg.set_content(f"Body of {subject}.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


# The client's local journal (per node and topic prefix, so tests never share one); not the user's home.
HOME = Path(tempfile.gettempdir()) / "mailgate-smtp-client-tests"


def settings_for(broker: Broker, **client: Any) -> Settings:
    return Settings(
        home=HOME,
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
                            partitions=2),
        smtp_server=SmtpServerSettings(hostname="gw.test"),
        smtp_client=SmtpClientSettings(**{"smarthost": "", "retry_delays_s": [0.5, 0.5, 0.5], "timeout_s": 5,
                                          **client}),
    )


class Harness:
    """The client under test, and what a test needs around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.codec = default_codec()
        self.producer = make_producer(settings, "test-feeder")
        self.client: SmtpClient | None = None
        self.task: asyncio.Task[None] | None = None

    def routed(self, data: bytes, rcpt_to: list[str], mail_from: str = "sender@origin.test",
               received_ms: int | None = None) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {"mail_id": new_mail_id(), "event_time": now, "node": "test", "queue": "out", "reasons": [],
                "destination": rcpt_to[0].rpartition("@")[2], "mail_from": mail_from, "rcpt_to": rcpt_to,
                "received_time": received_ms or now, "client_address": None, "size": len(data),
                "message": pack_message(data)}

    def feed(self, *records: dict[str, Any]) -> list[str]:
        for record in records:
            self.producer.produce(self.names.mail_out, key=record["destination"].encode(),
                                  value=self.codec.encode("MailRouted", record),
                                  headers=self.codec.headers("MailRouted", record["mail_id"]))
        assert self.producer.flush(10) == 0
        return [r["mail_id"] for r in records]

    def send(self, data: bytes, rcpt_to: list[str], mail_from: str = "sender@origin.test") -> str:
        return self.feed(self.routed(data, rcpt_to, mail_from))[0]

    async def start(self) -> SmtpClient:
        ready = asyncio.Event()
        self.client = SmtpClient(self.settings, stop=asyncio.Event())
        self.task = asyncio.create_task(self.client.run(ready))
        await asyncio.wait_for(ready.wait(), 60)
        return self.client

    async def stop(self) -> None:
        if self.client is not None and self.task is not None:
            self.client.stop.set()
            await asyncio.wait_for(self.task, 60)

    def topic(self, name: str) -> list[Record]:
        return read_topic(self.settings, self.names(name))

    def events(self, mail_id: str | None = None) -> list[Record]:
        return [r for r in self.topic("mail.delivery") if mail_id is None or r.value["mail_id"] == mail_id]

    async def wait_events(self, ok: Callable[[list[Record]], bool], timeout: float = 30.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            events = await asyncio.to_thread(self.events)
            if ok(events) or time.monotonic() > deadline:
                return events
            await asyncio.sleep(0.3)


@pytest.fixture
async def harness_factory(broker: Broker) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**client: Any) -> Harness:
        h = Harness(settings_for(broker, **client))
        ensure_topics(h.settings)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()

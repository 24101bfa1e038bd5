"""pop3-proxy / pop3s-proxy at the Kafka edge: MailReceived to mail.in, and the
UIDL ledger on the compacted topic pop3.uidls.

Every write here returns only once the broker acknowledged it (acks=all,
idempotent producer, ``core.kafka.AsyncProducer``), so that the collector
deletes a mail on the server only after its event and its ledger entry are
durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.metrics import MAILS
from ingress.pop3.settings import Settings
from core.tables import load_table
from ingress.pop3.uidls import MemoryUidlStore, UidlEntry, record_key
from schemas import Codec
from schemas.fast_encoder import FastEncoder

log = get_logger("pop3-proxy")
_TOMBSTONES_AT_ONCE = 1024


class MailInPublisher:
    """Publishes each collected mail's MailReceived to mail.in, keyed by its mail id."""

    def __init__(self, producer: AsyncProducer, topic: str, codec: Codec, service: str = "pop3-proxy") -> None:
        self.producer, self.topic, self.codec = producer, topic, codec
        self._fast = FastEncoder(codec.schema("MailReceived"))  # the avro package's writer: ~1/3 of the CPU
        self._published = MAILS.labels(service, "mail.in")  # /metrics: mailgate_mails_total

    async def publish(self, event: dict[str, Any]) -> None:
        value = self._fast.encode(event)
        await self.producer.send(self.topic, event["mail_id"].encode(), value,
                                 self.codec.headers("MailReceived", event["mail_id"]))
        self._published.inc()


class KafkaUidlStore(MemoryUidlStore):
    """The ledger as a table in memory, restored from pop3.uidls at start; every
    write goes to the topic first and enters the table once acknowledged.

    The table is read once, at start: each account is collected by one service
    of one node, so nobody else writes its keys meanwhile."""

    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        super().__init__()
        self.producer, self.topic = producer, topic

    def restore(self, settings: Settings, timeout: float = 30.0) -> int:
        """Reads pop3.uidls to its end (blocking); returns the live entries. A record
        that is not a ledger entry is skipped with a warning, never fatal."""
        table = load_table(settings, self.topic, timeout)
        for key, value in table.items():
            try:
                self.apply(key, value)
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("pop3.uidls record skipped", key=key[:100].decode(errors="replace"), error=str(exc))
        return sum(1 for _ in self.records())

    async def put(self, account: str, uidl: str, entry: UidlEntry) -> None:
        await self.producer.send(self.topic, record_key(account, uidl), entry.to_bytes())
        await super().put(account, uidl, entry)

    async def forget(self, account: str, uidls: Collection[str]) -> None:
        todo = list(uidls)
        for i in range(0, len(todo), _TOMBSTONES_AT_ONCE):
            await asyncio.gather(*(self.producer.send(self.topic, record_key(account, u), None)
                                   for u in todo[i:i + _TOMBSTONES_AT_ONCE]))
        await super().forget(account, todo)

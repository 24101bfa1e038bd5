"""pop3-proxy / pop3s-proxy at the Kafka edge: the UIDL ledger on the compacted topic
pop3.uidls (MailReceived goes to mail.in through ``core.publish.Publisher``).

Every write here returns only once the broker acknowledged it (acks=all,
idempotent producer, ``core.kafka.AsyncProducer``), so that the collector
deletes a mail on the server only after its event and its ledger entry are
durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.publish import Publisher
from ingress.pop3.settings import Settings
from core.tables import load_table
from ingress.pop3.uidls import MemoryUidlStore, UidlEntry, record_key

log = get_logger("pop3-proxy")
_TOMBSTONES_AT_ONCE = 1024


class KafkaUidlStore(MemoryUidlStore):
    """The ledger as a table in memory, restored from pop3.uidls at start; every
    write goes to the topic first and enters the table once acknowledged.

    The table is read once, at start: each account is collected by one service
    of one node, so nobody else writes its keys meanwhile."""

    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        super().__init__()
        self.publisher, self.topic = Publisher.on(producer), topic

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
        await self.publisher.send_raw(self.topic, record_key(account, uidl), entry.to_bytes())
        await super().put(account, uidl, entry)

    async def forget(self, account: str, uidls: Collection[str]) -> None:
        todo = list(uidls)
        for i in range(0, len(todo), _TOMBSTONES_AT_ONCE):
            await asyncio.gather(*(self.publisher.send_raw(self.topic, record_key(account, u), None)
                                   for u in todo[i:i + _TOMBSTONES_AT_ONCE]))
        await super().forget(account, todo)

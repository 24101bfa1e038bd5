"""maildepot-connector: a mail for the archive as an ArchiveSpooled record, and its publication
on archive.spool (acks=all; the caller learns only after the broker acknowledged it, and
mailgate_mails_total counts it)."""

from __future__ import annotations

import time
from core.kafka import AsyncProducer
from core.publish import Publisher
from ingress.connector.settings import Settings
from ingress.connector import metrics
from schemas import new_mail_id, packed
from schemas.events import ArchiveSpooled
from schemas.topics import ARCHIVE_SPOOL, TopicNames


def spool_record(settings: Settings, raw: bytes, mail_from: str, rcpt_to: list[str], source: str,
                 origin: str | None, mail_id: str | None = None, received_ms: int | None = None) -> ArchiveSpooled:
    now = int(time.time() * 1000)
    return ArchiveSpooled(
        mail_id=mail_id or new_mail_id(now), event_time=now, node=settings.node, source=source,
        rule=settings.connector.rule, retention_days=settings.connector.retention_days,
        direction=None, verdict=None, mail_from=mail_from, rcpt_to=rcpt_to,
        received_time=received_ms or now, size=len(raw), origin=origin, message=packed(raw),
    )


class Spool:
    """Publishes ArchiveSpooled records; ``await put(record)`` returns once Kafka has it."""

    def __init__(self, settings: Settings) -> None:
        self.topic = TopicNames(settings.kafka.topic_prefix)(ARCHIVE_SPOOL)
        self.producer = AsyncProducer(settings, metrics.SERVICE)
        self.publisher = Publisher.on(self.producer)

    async def put(self, record: ArchiveSpooled) -> None:
        await self.publisher.publish(self.topic, record)
        metrics.SPOOLED.inc()

    def close(self) -> None:
        self.producer.close()

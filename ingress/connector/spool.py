"""maildepot-connector: a mail for the archive as an ArchiveSpooled record, and its publication
on archive.spool (acks=all; the caller learns only after the broker acknowledged it, and
mailgate_mails_total counts it)."""

from __future__ import annotations

import time
from typing import Any

from core.kafka import AsyncProducer
from ingress.connector.settings import Settings
from ingress.connector import metrics
from schemas import default_codec, new_mail_id, pack_message
from schemas.topics import ARCHIVE_SPOOL, TopicNames


def spool_record(settings: Settings, raw: bytes, mail_from: str, rcpt_to: list[str], source: str,
                 origin: str | None, mail_id: str | None = None, received_ms: int | None = None) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "mail_id": mail_id or new_mail_id(now), "event_time": now, "node": settings.node, "source": source,
        "rule": settings.connector.rule, "retention_days": settings.connector.retention_days,
        "direction": None, "verdict": None, "mail_from": mail_from, "rcpt_to": rcpt_to,
        "received_time": received_ms or now, "size": len(raw), "origin": origin, "message": pack_message(raw),
    }


class Spool:
    """Publishes ArchiveSpooled records; ``await put(record)`` returns once Kafka has it."""

    def __init__(self, settings: Settings) -> None:
        self.topic = TopicNames(settings.kafka.topic_prefix)(ARCHIVE_SPOOL)
        self.codec = default_codec()
        self.producer = AsyncProducer(settings, metrics.SERVICE)

    async def put(self, record: dict[str, Any]) -> None:
        await self.producer.send(self.topic, record["mail_id"].encode(), self.codec.encode("ArchiveSpooled", record),
                                 self.codec.headers("ArchiveSpooled", record["mail_id"]))
        metrics.SPOOLED.inc()

    def close(self) -> None:
        self.producer.close()

"""maildepot-connector: the SMTP journal endpoint (journaling or BCC from another mail server).

An aiosmtpd handler: every mail it is given goes to archive.spool; it answers
``250`` only after Kafka acknowledged the record (acks=all), ``451`` when it
could not, so the sending server keeps the mail and tries again.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from core.kafka import KafkaUnavailable
from core.logging import get_logger
from ingress.connector.settings import Settings
from ingress.connector import metrics
from ingress.connector.spool import Spool, spool_record

log = get_logger("maildepot-connector")


class JournalHandler:
    def __init__(self, settings: Settings, spool: Spool) -> None:
        self.settings, self.spool = settings, spool

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        record = spool_record(self.settings, raw, envelope.mail_from or "", list(envelope.rcpt_tos),
                              "journal", f"smtp:{peer}")
        try:
            await self.spool.put(record)
        except (KafkaUnavailable, TimeoutError) as exc:
            log.warning("journal mail not taken", mail_id=record.mail_id, error=str(exc))
            metrics.JOURNAL_REFUSED.inc()
            return "451 4.3.0 Archive spool unavailable, try again later"
        metrics.JOURNALED.inc()
        log.info("journaled", mail_id=record.mail_id, size=len(raw), client=peer)
        return f"250 2.0.0 Ok: archived as {record.mail_id}"


def journal_server(settings: Settings, spool: Spool) -> Any:
    """A protocol factory for ``loop.create_server``."""
    handler = JournalHandler(settings, spool)
    return lambda: SMTP(handler, hostname=settings.hostname, ident="mailgate journal",
                        data_size_limit=settings.max_message_size)

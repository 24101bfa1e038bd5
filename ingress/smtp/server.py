"""Entry point of smtp-server: `mailgate service smtp-server`.

Listens with aiosmtpd on the configured address and publishes each accepted mail
to mail.in (acks=all, idempotent producer).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiosmtpd.smtp import SMTP

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.settings import Settings
from ingress.smtp.handler import GatewayHandler
from schemas import Codec, default_codec
from schemas.topics import TopicNames

log = get_logger("smtp-server")


class MailInPublisher:
    """Publishes MailReceived events to mail.in, keyed by mail id."""

    def __init__(self, producer: AsyncProducer, topic: str, codec: Codec) -> None:
        self.producer = producer
        self.topic = topic
        self.codec = codec

    async def publish(self, event: dict[str, Any]) -> None:
        value = self.codec.encode("MailReceived", event)
        headers = self.codec.headers("MailReceived", event["mail_id"])
        await self.producer.send(self.topic, event["mail_id"].encode(), value, headers)


async def serve(settings: Settings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    cfg = settings.smtp_server
    producer = AsyncProducer(settings, "smtp-server")
    publisher = MailInPublisher(producer, TopicNames(settings.kafka.topic_prefix).mail_in, default_codec())
    handler = GatewayHandler(publisher, cfg.domains, settings.node, cfg.max_recipients)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(handler, hostname=cfg.hostname, data_size_limit=cfg.max_message_size,
                    enable_SMTPUTF8=True, decode_data=False, ident="mailgate ESMTP")

    server = await loop.create_server(factory, host=cfg.host, port=cfg.port)
    log.info("listening", address=f"{cfg.host}:{cfg.port}", domains=",".join(cfg.domains),
             kafka=settings.bootstrap_servers)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        left = await asyncio.to_thread(producer.close, 10.0)
        log.info("stopped", unacknowledged=left)

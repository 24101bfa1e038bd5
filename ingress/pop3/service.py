"""Entry of the processes `mailgate service pop3-proxy` and `mailgate service pop3s-proxy`:
the Kafka wiring around ``Pop3Service``.

Restores the UIDL ledger from pop3.uidls before the first cycle (no ledger, no
collection: a mail could be fetched twice), then collects every account of the
service on its schedule until SIGTERM/SIGINT, reporting each account's status
to control.status. With no account configured for it, the service stays up and
idle (the engine lists it as running; its log says how to add one) instead of
exiting and being restarted over and over.
"""

from __future__ import annotations

import asyncio
import signal

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.publish import Publisher
from ingress.pop3.settings import Settings
from ingress.pop3.kafka import KafkaUidlStore
from ingress.pop3.scheduler import Pop3Service
from ingress.pop3.status import StatusReporter
from schemas.topics import POP3_UIDLS, TopicNames

log = get_logger("pop3-proxy")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread: SIGTERM then ends the process as usual


async def run_service(settings: Settings, service: str, stop: asyncio.Event | None = None) -> None:
    """Run pop3-proxy or pop3s-proxy (``service``) until ``stop`` is set, or without
    ``stop`` (the process), until SIGTERM/SIGINT."""
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
    accounts = settings.pop3.accounts_for(service)
    if not accounts:
        log.info("no POP3 account configured for this service: idle", service=service,
                 hint="add [[pop3.accounts]] to mailgate.toml (tls implicit: pop3s-proxy; else pop3-proxy)")
        await stop.wait()
        return
    names = TopicNames(settings.kafka.topic_prefix)
    producer = AsyncProducer(settings, service)
    reporter = StatusReporter(settings, service)
    try:
        store = KafkaUidlStore(producer, names(POP3_UIDLS))
        entries = await asyncio.to_thread(store.restore, settings)
        log.info("UIDL ledger restored", service=service, entries=entries, topic=store.topic)
        pop3 = Pop3Service(settings.pop3, Publisher.on(producer), store, node=settings.node, service=service,
                           mail_in=names.mail_in)
        await asyncio.to_thread(reporter.forget_removed, settings, {a.name for a in accounts})
        for status in pop3.statuses():
            reporter.report(status)
        await pop3.run(stop, reporter.report)
    finally:
        reporter.close()
        left = await asyncio.to_thread(producer.close, 10.0)
        log.info("stopped", service=service, unacknowledged=left)

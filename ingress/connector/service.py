"""Entry point of maildepot-connector: `mailgate service maildepot-connector`.

Runs the SMTP journal endpoint (when ``connector.journal_port`` is set) and looks
at the import directory every ``connector.scan_interval_s``; both publish to
archive.spool. Its metrics: ingress/connector/metrics.py.
"""

from __future__ import annotations

import asyncio
import signal

from core.kafka import KafkaUnavailable
from core.logging import get_logger
from ingress.connector.settings import Settings
from ingress.connector.importer import scan
from ingress.connector.journal import journal_server
from ingress.connector.spool import Spool

log = get_logger("maildepot-connector")


async def _imports(settings: Settings, spool: Spool, stop: asyncio.Event) -> None:
    directory = settings.connector.import_path(settings.home)
    directory.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        try:
            await scan(settings, spool, directory)
        except (KafkaUnavailable, TimeoutError) as exc:  # left in place; imported again (same ids) next time
            log.warning("import waits for Kafka", error=str(exc))
        try:
            await asyncio.wait_for(stop.wait(), settings.connector.scan_interval_s)
        except TimeoutError:
            pass


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    spool = Spool(settings)
    c = settings.connector
    server = None
    if c.journal_port:
        server = await loop.create_server(journal_server(settings, spool), c.journal_host, c.journal_port)
        log.info("journal endpoint listening", address=f"{c.journal_host}:{c.journal_port}")
    log.info("importing", directory=str(c.import_path(settings.home)))
    try:
        await _imports(settings, spool, stop)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        spool.close()

"""pop3-proxy and pop3s-proxy: collect every configured account on its own schedule
until told to stop.

The wiring (the Kafka publisher to mail.in and the UIDL store on pop3.uidls)
is injected by the caller (the process: ``ingress.pop3.service``)::

    service = Pop3Service(settings.pop3, publisher, uidl_store, node=settings.node, service="pop3s-proxy")
    await service.run(stop)            # or: await serve(settings.pop3, publisher, uidl_store, stop, ...)

pop3-proxy takes the accounts with tls none/starttls-*, pop3s-proxy those with
implicit TLS; ``service=None`` takes them all.
"""

from __future__ import annotations

import asyncio

from core.logging import get_logger
from ingress.pop3.collector import AccountCollector, AccountStatus, Publisher, StatusCallback
from ingress.pop3.settings import Pop3Settings
from ingress.pop3.uidls import UidlStore

log = get_logger("pop3-proxy")


class Pop3Service:
    def __init__(self, settings: Pop3Settings, publisher: Publisher, uidl_store: UidlStore, *, node: str,
                 service: str | None = None, mail_in: str = "mail.in") -> None:
        self.name = service or "pop3-proxy"
        sessions = asyncio.Semaphore(settings.max_sessions)
        self.collectors = [
            AccountCollector(account, publisher, uidl_store, node, max_in_flight=settings.max_in_flight,
                             max_in_flight_bytes=settings.max_in_flight_bytes,
                             backoff_max_s=settings.backoff_max_s, sessions=sessions, mail_in=mail_in,
                             service=self.name)
            for account in settings.accounts_for(service)
        ]

    def statuses(self) -> list[AccountStatus]:
        """Per account: last success, last error, counts, next attempt."""
        return [c.status for c in self.collectors]

    async def run(self, stop: asyncio.Event, on_status: StatusCallback | None = None) -> None:
        """Run every account until ``stop`` is set; a cycle under way finishes its
        in-flight mails and QUITs first. ``on_status`` is called after every cycle."""
        if not self.collectors:
            log.warning("no POP3 accounts for this service", service=self.name)
        log.info("collecting", service=self.name, accounts=",".join(c.account.name for c in self.collectors))
        async with asyncio.TaskGroup() as group:
            for c in self.collectors:
                group.create_task(c.run(stop, on_status), name=f"{self.name}:{c.account.name}")
        log.info("stopped", service=self.name)


async def serve(settings: Pop3Settings, publisher: Publisher, uidl_store: UidlStore, stop: asyncio.Event, *,
                node: str, service: str | None = None, on_status: StatusCallback | None = None) -> None:
    """Run pop3-proxy (``service="pop3-proxy"``) or pop3s-proxy until ``stop`` is set."""
    await Pop3Service(settings, publisher, uidl_store, node=node, service=service).run(stop, on_status)

"""smtp-client: connections reused per host, and a concurrency limit per destination.

A delivery first takes a slot of its destination (``Route.limit_key``: the
domain for MX routing, the host:port of a fixed next hop), then an idle
connection to the host, or a new one. After a clean transaction the connection
goes back to the pool for the next mail (up to ``connection_reuse`` mails, idle
at most ``connection_idle_s``), like Postfix's connection cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from egress.smtp_client.settings import TlsPolicy
from egress.smtp_client.connection import Connection, open_connection
from egress.smtp_client.routing import Host

_PoolKey = tuple[Host, TlsPolicy]


class Pool:
    def __init__(self, helo: str, timeout_s: float, per_destination: int, reuse: int, idle_s: float,
                 ca_file: Path | None = None) -> None:
        self.helo = helo
        self.timeout_s = timeout_s
        self.per_destination = per_destination
        self.reuse = reuse
        self.idle_s = idle_s
        self.ca_file = ca_file
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._idle: dict[_PoolKey, list[Connection]] = defaultdict(list)
        self.opened = 0  # connections made, for tests and logs

    @asynccontextmanager
    async def slot(self, limit_key: str) -> AsyncIterator[None]:
        sem = self._slots.get(limit_key)
        if sem is None:
            sem = self._slots[limit_key] = asyncio.Semaphore(self.per_destination)
        async with sem:
            yield

    def busy(self, limit_key: str) -> int:
        sem = self._slots.get(limit_key)
        return 0 if sem is None else self.per_destination - sem._value

    async def get(self, host: Host, policy: TlsPolicy) -> tuple[Connection, bool]:
        """A connection to ``host`` and whether it was reused (a reused one may have died meanwhile)."""
        idle = self._idle.get((host, policy), [])
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.alive and now - conn.last_used <= self.idle_s:
                return conn, True
            await conn.close()
        self.opened += 1
        return await open_connection(host, policy, self.helo, self.timeout_s, self.ca_file), False

    async def put(self, conn: Connection, policy: TlsPolicy, reusable: bool) -> None:
        conn.uses += 1
        conn.last_used = time.monotonic()
        if reusable and conn.alive and conn.uses < self.reuse and self.idle_s > 0:
            self._idle[(conn.host, policy)].append(conn)
        else:
            await conn.close()

    async def expire(self) -> None:
        """Close connections idle for longer than ``idle_s`` (called now and then)."""
        now = time.monotonic()
        for key, conns in list(self._idle.items()):
            keep = [c for c in conns if c.alive and now - c.last_used <= self.idle_s]
            kept = {id(c) for c in keep}
            for conn in conns:
                if id(conn) not in kept:
                    await conn.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def close(self) -> None:
        conns = [c for cs in self._idle.values() for c in cs]
        self._idle.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

"""message-validation, senders: allow/deny list matching (the entries mean what they
mean in phase 1: ``core.address_lists``), and the table of senders
confirmed for challenge-response (CISS), read from the compacted topic ciss.senders.

Every validation node reads the whole topic (core.tables.TableFollower, no consumer
group) and follows it, so a confirmation made anywhere holds here within a second.
Until the table has been read to its end, ``ConfirmedSenders.ready`` is not set and
mail for CISS domains waits for it (else every sender would look unknown after a
restart).
"""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache
from typing import Any

from core.address_lists import AddressList, normalise
from core.logging import get_logger
from streams.validation.settings import Settings
from core.tables import TableFollower
from schemas import Codec
from schemas.topics import CISS_SENDERS, TopicNames

log = get_logger("message-validation")


@lru_cache(maxsize=1024)
def _address_list(entries: tuple[str, ...]) -> AddressList:
    return AddressList(entries)


def listed(sender: str, entries: list[str]) -> str | None:
    """The entry that names this sender: "user@domain", "domain" (it and its subdomains),
    "@domain" (it only) or ".domain" (its subdomains only)."""
    return _address_list(tuple(entries)).match(sender)


class ConfirmedSenders:
    """Sender address → the ms time its confirmation lapses (None: never)."""

    def __init__(self) -> None:
        self._expiry: dict[str, int | None] = {}
        self.ready = asyncio.Event()

    def apply(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._expiry.pop(normalise(key), None)
        else:
            self._expiry[normalise(record.get("sender") or key)] = record.get("expires_time")

    def confirmed(self, sender: str, now_ms: int | None = None) -> bool:
        key = normalise(sender)
        if key not in self._expiry:
            return False
        expiry = self._expiry[key]
        return expiry is None or expiry > (int(time.time() * 1000) if now_ms is None else now_ms)

    def __len__(self) -> int:
        return len(self._expiry)

    def follow(self, app: Any, settings: Settings, codec: Codec) -> ConfirmedSenders:
        """Starts following ciss.senders with the Faust app's tasks."""

        @app.task
        async def follow_ciss_senders() -> None:
            loop = asyncio.get_running_loop()

            def apply(key: bytes, value: bytes | None) -> None:
                record = None if value is None else codec.decode(value, expect="CissSender").record
                loop.call_soon_threadsafe(self.apply, key.decode(errors="replace"), record)

            topic = TopicNames(settings.kafka.topic_prefix)(CISS_SENDERS)
            try:
                follower = TableFollower(settings, topic, apply, name="message-validation-ciss")
                await asyncio.to_thread(follower.start, 60.0)  # a daemon thread, for the process's life
            except Exception as exc:  # no table: every sender is unknown (held on mail.ciss, never passed)
                log.error("ciss.senders not readable: mail for CISS domains goes to mail.ciss", error=str(exc))
            loop.call_soon_threadsafe(self.ready.set)  # after the records queued above
            log.info("ciss.senders loaded", senders=len(self))

        return self

"""smtp-server: the greylisting state shared by every node, in the compacted topic
smtp.greylist. A ``core.tables.TableFollower`` reads the topic from its start (every
node reads every partition) into the ``GreylistStore``; the store's writes go to the
topic through the server's producer. ``sweep_forever`` tombstones the expired triplets
now and then; every node drops a triplet when it reads its tombstone.

Two nodes may sweep the same triplet: the tombstones are the same, no harm. A triplet
seen again on node B at the very moment node A sweeps it (it had expired) may lose B's
new entry to A's tombstone: that sender is greylisted once more, nothing worse."""

from __future__ import annotations

import asyncio
import random
import time

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.publish import Publisher
from ingress.smtp.settings import Settings
from core.tables import TableFollower
from ingress.smtp.filters.greylist import Expiry, GreylistStore, Triplet

log = get_logger("smtp-server")


class GreylistSync:
    def __init__(self, settings: Settings, topic: str, producer: AsyncProducer) -> None:
        self.topic = topic
        self.publisher = Publisher.on(producer)
        self.store = GreylistStore(self._publish)
        self._follower = TableFollower(settings, topic, self._apply, name="greylist")

    def start(self, timeout: float = 30.0) -> None:
        """Read the topic to its end before the server takes mail."""
        try:
            self._follower.start(timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.topic} not read to its end within {timeout:.0f}s: is Kafka up?") from None
        except RuntimeError as exc:
            raise RuntimeError(f"cannot read the greylisting state from {self.topic}: {exc}") from exc

    def stop(self) -> None:
        self._follower.stop()

    async def sweep_forever(self, expiry: Expiry, interval_s: float) -> None:
        """Tombstone the expired triplets every ``interval_s`` (jittered, so the nodes do not
        all sweep at the same moment); runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
            try:
                self.sweep(expiry)
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again; greylisting goes on
                log.error("greylist sweep failed", topic=self.topic, error=repr(exc), exc_info=exc)

    def sweep(self, expiry: Expiry, now_ms: int | None = None) -> list[str]:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        gone = self.store.sweep(expiry, now_ms)
        if gone:
            log.info("greylist triplets expired", topic=self.topic, tombstoned=len(gone), left=len(self.store))
        return gone

    def _publish(self, key: str, entry: Triplet | None) -> None:
        # None: a tombstone. Not awaited: a greylisting answer never waits for Kafka.
        self.publisher.publish_soon(self.topic, None, key=key, value=None if entry is None else entry.to_bytes(),
                                    what="greylist entry")

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        try:
            self.store.apply(key.decode(), Triplet.from_bytes(value) if value else None)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad greylist record skipped", key=key[:100], error=str(exc))

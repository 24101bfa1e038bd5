"""smtp-client's delivery log: which recipients of a mail copy are finished.

A compacted topic (``mail.delivery.log``), key ``mail_id/destination``, value a
DeliveryLog record with every recipient finished so far (accepted by the next
hop, or bounced). The client writes it as soon as the next hop said 250 — before
events, before the offset commit — and reads it before each attempt, so a
record delivered again after a crash (``kill -9``) or a rebalance skips the
recipients already done. Every instance tails the whole topic (``core.tables.TableFollower``);
on start and on each partition assignment it first reads to the end.
A copy that is finished and whose offset is committed gets a tombstone.

Each mark is first appended to this instance's local journal (``journal.py``), then
produced: a ``kill -9`` before the broker has the record no longer loses it, the next
run writes it from the journal (``replay``) before it consumes anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.publish import Publisher
from egress.smtp_client.settings import Settings
from core.tables import TableFollower
from egress.smtp_client.journal import Entry, Journal
from schemas import Codec, DecodeError
from schemas.events import DeliveryLog as DeliveryLogRecord

log = get_logger("smtp-client")


# A mark must leave the process the moment the 250 is read: a kill -9 loses what librdkafka still
# holds. linger 0: each mark is sent at once, never held for a batch. Kept idempotent (at most 5
# requests in flight, later marks ride in the next one): a non-idempotent producer with unlimited
# requests in flight was tried and left no fewer duplicates after kill -9 (bench/delivery_kill.py and
# an instrumented client): under load what delays a mark is the process waiting for a core, and the
# broker reading one request per connection at a time, not the client's request limit.
MARK_NOW = {"linger.ms": 0}

# durably(what, make the awaitable): retries a Kafka write until it is acknowledged.
Durably = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]


def log_key(mail_id: str, destination: str | None) -> str:
    return f"{mail_id}/{destination or ''}"


class DeliveryLog:
    def __init__(self, settings: Settings, codec: Codec, topic: str) -> None:
        self.topic = topic
        self.codec = codec
        self.node = settings.node
        self._done: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._follower = TableFollower(settings, topic, self._apply, name="smtp-client-log")
        self._producer = AsyncProducer(settings, "smtp-client-log", **MARK_NOW)
        self._publisher = Publisher.on(self._producer, codec)
        # Per node and per log topic (which carries the prefix): never shared by two gateways.
        self.journal = Journal(settings.home / "smtp-client" / settings.node / topic,
                               settings.smtp_client.journal_fsync)
        self._recovered: list[Entry] = []

    # -- reading ---------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        self._recovered = self.journal.open()
        self._follower.start(timeout)

    def _apply(self, raw_key: bytes, value: bytes | None) -> None:
        key = raw_key.decode(errors="replace")
        done = self._read_value(key, value)
        with self._lock:
            if done is None:
                self._done.pop(key, None)
            elif done:
                self._done[key] = self._done.get(key, frozenset()) | done

    def _read_value(self, key: str, value: bytes | None) -> frozenset[str] | None:
        """The recipients a record marks done; None for a tombstone (empty when unreadable)."""
        if value is None:
            return None
        try:
            return frozenset(self.codec.decode(value, expect="DeliveryLog").record["done"])
        except DecodeError as exc:
            log.warning("unreadable delivery log record", key=key, error=str(exc))
            return frozenset()

    def wait_caught_up(self, timeout: float = 30.0) -> bool:
        """Blocks until everything written to the log before this call has been read."""
        return self._follower.wait_caught_up(timeout)

    def done(self, key: str) -> frozenset[str]:
        with self._lock:
            return self._done.get(key, frozenset())

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    # -- writing ---------------------------------------------------------------

    def record(self, mail_id: str, destination: str | None, recipients: Iterable[str], reply: str = "") -> Entry:
        """Journal these recipients as finished (one write(2), survives kill -9); ``publish`` sends it."""
        key, rcpts = log_key(mail_id, destination), sorted(recipients)
        try:
            entry = self.journal.append(key, mail_id, destination or "", rcpts, reply)
        except OSError as exc:  # a full disk: the mark still goes to Kafka, only kill -9 is not covered
            log.error("cannot write the delivery journal; the delivery log record is sent without it",
                      mail_id=mail_id, destination=destination, error=str(exc),
                      hint=f"free space in {self.journal.directory}")
            entry = Entry(key, mail_id, destination or "", rcpts, reply)
        with self._lock:
            self._done[key] = self._done.get(key, frozenset()) | frozenset(entry.recipients)
        return entry

    async def publish(self, entry: Entry) -> None:
        """Returns when the broker has the mark (with every recipient of the copy done so far)."""
        await self.journal.synced()
        with self._lock:
            done = self._done.get(entry.key, frozenset()) | frozenset(entry.recipients)
        mark = DeliveryLogRecord(mail_id=entry.mail_id, event_time=int(time.time() * 1000), node=self.node,
                                 destination=entry.destination, done=sorted(done))
        await self._publisher.publish(self.topic, mark, key=entry.key)
        self.journal.acknowledged(entry)

    async def confirm(self, entry: Entry, durably: Durably) -> None:
        """Publish a journalled mark until the broker has it."""
        await durably("delivery log", lambda: self.publish(entry))

    async def mark(self, mail_id: str, destination: str | None, recipients: Iterable[str], durably: Durably,
                   reply: str = "") -> None:
        """Journal (synchronously, before the first await), then publish until the broker has it."""
        await self.confirm(self.record(mail_id, destination, recipients, reply), durably)

    async def replay(self, durably: Durably) -> int:
        """Writes the marks an earlier run journalled but Kafka may not have; call after ``start``."""
        todo = [e for e in self._recovered if not frozenset(e.recipients) <= self.done(e.key)]
        for entry in todo:
            log.warning("delivery log mark recovered from the journal", mail_id=entry.mail_id,
                        destination=entry.destination, rcpt=entry.recipients, reply=entry.reply)
            await self.mark(entry.mail_id, entry.destination or None, entry.recipients, durably, entry.reply)
        self._recovered = []
        self.journal.recovered()
        return len(todo)

    def rotate(self) -> None:
        self.journal.rotate()

    async def forget(self, keys: Iterable[str]) -> None:
        """Tombstones for finished copies whose offsets are committed."""
        keys = list(keys)
        self.journal.forgot(keys)  # first: a replay must not bring back a tombstoned key
        sends = []
        for key in keys:
            with self._lock:
                self._done.pop(key, None)
            sends.append(self._publisher.send_raw(self.topic, key, None))
        await asyncio.gather(*sends, return_exceptions=True)

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """One attempt at a time per copy, so two records of one copy never race past the log."""
        lock, users = self._key_locks.get(key) or (asyncio.Lock(), 0)
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._key_locks[key]
            if users <= 1:
                del self._key_locks[key]
            else:
                self._key_locks[key] = (lock, users - 1)

    def close(self) -> None:
        self._follower.stop()
        self._producer.close(10.0)
        self.journal.close()

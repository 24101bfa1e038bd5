"""smtp-client's delivery log: which recipients of a mail copy are finished.

A compacted topic (``mail.delivery.log``), key ``mail_id/destination``, value a
DeliveryLog record with every recipient finished so far (accepted by the next
hop, or bounced). The client writes it as soon as the next hop said 250 — before
events, before the offset commit — and reads it before each attempt, so a
record delivered again after a crash (``kill -9``) or a rebalance skips the
recipients already done. Every instance tails the whole topic in a thread of
its own; on start and on each partition assignment it first reads to the end.
A copy that is finished and whose offset is committed gets a tombstone.

Each mark is first appended to this instance's local journal (``journal.py``), then
produced: a ``kill -9`` before the broker has the record no longer loses it, the next
run writes it from the journal (``replay``) before it consumes anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from core.kafka import AsyncProducer, make_consumer
from core.logging import get_logger
from egress.smtp_client.settings import Settings
from egress.smtp_client.journal import Entry, Journal
from schemas import Codec, DecodeError

log = get_logger("smtp-client")


# A mark must leave the process the moment the 250 is read: a kill -9 loses what librdkafka still
# holds. linger 0: each mark is sent at once, never held for a batch. Kept idempotent (at most 5
# requests in flight, later marks ride in the next one): a non-idempotent producer with unlimited
# requests in flight was tried and left no fewer duplicates after kill -9 (bench/delivery_kill.py and
# an instrumented client): under load what delays a mark is the process waiting for a core, and the
# broker reading one request per connection at a time, not the client's request limit.
MARK_NOW = {"linger.ms": 0}

# A topic just created (or a broker restarting) answers these for a moment; waited out on start.
NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


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
        self._partitions: list[int] = []
        self._seen: dict[int, int] = {}  # partition → next offset read (or end of partition)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._key_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._consumer = make_consumer(settings, f"{topic}.tail.{uuid.uuid4().hex[:8]}", "smtp-client-log",
                                       **{"enable.partition.eof": True})
        # A consumer of its own for watermarks: the tailing one is busy in poll() (calls on it would wait).
        self._meta = make_consumer(settings, f"{topic}.meta.{uuid.uuid4().hex[:8]}", "smtp-client-log-meta")
        self._producer = AsyncProducer(settings, "smtp-client-log", **MARK_NOW)
        self._thread = threading.Thread(target=self._tail, name="smtp-client-log-tail", daemon=True)
        # Per node and per log topic (which carries the prefix): never shared by two gateways.
        self.journal = Journal(settings.home / "smtp-client" / settings.node / topic,
                               settings.smtp_client.journal_fsync)
        self._recovered: list[Entry] = []

    # -- reading ---------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        meta = self._meta.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {self.topic} is missing: run `mailgate topics create`")
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self._partitions = sorted(meta.partitions)
        self._recovered = self.journal.open()
        self._thread.start()
        if not self.wait_caught_up(timeout):
            raise RuntimeError(f"could not read {self.topic} to its end within {timeout:.0f}s")

    def _tail(self) -> None:
        while not self._closing.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            err, partition, offset = msg.error(), msg.partition() or 0, msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    with self._lock:
                        self._seen[partition] = max(self._seen.get(partition, 0), offset)
                continue
            raw_key = msg.key() or b""
            key = raw_key.decode(errors="replace") if isinstance(raw_key, bytes) else raw_key
            done = self._read_value(key, msg.value())
            with self._lock:  # applied first, then counted as seen: caught up means known
                if done is None:
                    self._done.pop(key, None)
                elif done:
                    self._done[key] = self._done.get(key, frozenset()) | done
                self._seen[partition] = offset + 1

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
        deadline = time.monotonic() + timeout
        ends = {p: self._end_offset(p, deadline) for p in self._partitions}
        while time.monotonic() < deadline:
            with self._lock:
                if all(self._seen.get(p, 0) >= end for p, end in ends.items() if end > 0):
                    return True
            time.sleep(0.02)
        return False

    def _end_offset(self, partition: int, deadline: float) -> int:
        """The partition's end; waits out retriable errors (a topic just created has no leader yet)."""
        while True:
            try:
                return int(self._meta.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                            timeout=max(deadline - time.monotonic(), 0.1))[1])
            except KafkaException as exc:
                err = exc.args[0]
                if not (err.retriable() or err.code() in NO_LEADER_YET) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

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
        record = {"mail_id": entry.mail_id, "event_time": int(time.time() * 1000), "node": self.node,
                  "destination": entry.destination, "done": sorted(done)}
        value = self.codec.encode("DeliveryLog", record)
        await self._producer.send(self.topic, entry.key.encode(), value,
                                  self.codec.headers("DeliveryLog", entry.mail_id))
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
            sends.append(self._producer.send(self.topic, key.encode(), None))  # type: ignore[arg-type]
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
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._consumer.close()
        self._meta.close()
        self._producer.close(10.0)
        self.journal.close()

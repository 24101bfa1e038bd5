"""smtp-server: the greylisting state shared by every node, in the compacted topic
smtp.greylist. A thread reads the topic from its start (no consumer group: every
node reads every partition) into the ``GreylistStore``; the store's writes go to the
topic through the server's producer. ``sweep_forever`` tombstones the expired triplets
now and then; every node drops a triplet when it reads its tombstone.

Two nodes may sweep the same triplet: the tombstones are the same, no harm. A triplet
seen again on node B at the very moment node A sweeps it (it had expired) may lose B's
new entry to A's tombstone: that sender is greylisted once more, nothing worse."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from core.kafka import AsyncProducer, make_consumer
from core.logging import get_logger
from ingress.smtp.settings import Settings
from ingress.smtp.filters.greylist import Expiry, GreylistStore, Triplet

log = get_logger("smtp-server")


class GreylistSync:
    def __init__(self, settings: Settings, topic: str, producer: AsyncProducer) -> None:
        self.topic = topic
        self.producer = producer
        self.store = GreylistStore(self._publish)
        self.loaded = threading.Event()
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._settings = settings
        self._pending: set[asyncio.Task[object]] = set()
        self._thread = threading.Thread(target=self._run, name="greylist-sync", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Read the topic to its end before the server takes mail."""
        self._thread.start()
        if not self.loaded.wait(timeout):
            raise TimeoutError(f"{self.topic} not read to its end within {timeout:.0f}s: is Kafka up?")
        if self.error is not None:
            raise RuntimeError(f"cannot read the greylisting state from {self.topic}: {self.error}") from self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

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
        value = None if entry is None else entry.to_bytes()  # None: a tombstone
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.producer.send(self.topic, key.encode(), value, loop=loop))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("greylist entry not written", topic=self.topic, error=str(task.exception()))

    def _ends(self, consumer: Consumer) -> dict[int, int]:
        """The end offset of every partition, retried while a new topic gets its leaders."""
        deadline = time.monotonic() + 30
        while True:
            try:
                meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
                if meta.error is not None:
                    raise KafkaException(meta.error)
                return {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                        for p in sorted(meta.partitions)}
            except KafkaException:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(0.2)

    def _run(self) -> None:
        consumer = make_consumer(self._settings, group=f"greylist-{uuid.uuid4().hex}", client_id="greylist")
        try:
            ends = self._ends(consumer)
            pending = {p for p, high in ends.items() if high > 0}
            consumer.assign([TopicPartition(self.topic, p, 0) for p in ends])
            if not pending:
                self.loaded.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("greylist topic read error", error=str(err))
                    continue
                self._apply(msg.key(), msg.value())
                part, offset = msg.partition() or 0, msg.offset() or 0
                if part in pending and offset + 1 >= ends[part]:
                    pending.discard(part)
                    if not pending:
                        self.loaded.set()
        except Exception as exc:  # noqa: BLE001 - start() reports it: no greylisting without the state
            self.error = exc
            self.loaded.set()
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        try:
            self.store.apply(key.decode(), Triplet.from_bytes(value) if value else None)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad greylist record skipped", key=key[:100], error=str(exc))

"""Compacted topics read as tables: every node reads the whole topic (no consumer
group), first up to its end, then follows it. Used for state every node shares
(writer schemas, spam patterns, POP3 UIDLs, greylisting triplets)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from core.kafka import make_consumer
from core.logging import get_logger
from core.settings import GatewaySettings

log = get_logger("tables")

OnRecord = Callable[[bytes, bytes | None], None]  # key, value (None: a tombstone)


def _assign_all(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    """Assign every partition from its start; returns partition → end offset (now).

    A topic created a moment ago may not have its leaders yet: those errors are waited out.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _assign_all_once(consumer, topic, timeout)
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}


def _assign_all_once(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise LookupError(f"topic {topic} does not exist: run `mailgate topics create`")
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                  for p in meta.partitions}
    consumer.assign([TopicPartition(topic, p, low) for p, (low, _high) in watermarks.items()])
    return {p: high for p, (low, high) in watermarks.items() if high > low}


def load_table(settings: GatewaySettings, topic: str, timeout: float = 10.0) -> dict[bytes, bytes]:
    """The current content of a compacted topic: key → latest value (tombstones removed)."""
    table: dict[bytes, bytes] = {}

    def apply(key: bytes, value: bytes | None) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    consumer = make_consumer(settings, group=f"{topic}.table-reader", client_id="table-reader")
    try:
        pending = _assign_all(consumer, topic, timeout)
        while pending:
            msg = consumer.poll(timeout)
            if msg is None:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:.0f}s")
            if msg.error() is not None:
                continue
            key, offset, partition = msg.key(), msg.offset(), msg.partition()
            assert offset is not None and partition is not None  # a message without error has both
            if key is not None:
                apply(key, msg.value())
            if offset + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
    finally:
        consumer.close()
    return table


class TableFollower:
    """Follows a compacted topic in a thread, calling ``on_record`` for each record.

    ``caught_up`` is set once everything that was in the topic at start has been applied.
    """

    def __init__(self, settings: GatewaySettings, topic: str, on_record: OnRecord, name: str = "table") -> None:
        self._consumer = make_consumer(settings, group=f"{topic}.follower", client_id=f"{name}-follower")
        self._topic = topic
        self._on_record = on_record
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self, timeout: float = 30.0) -> TableFollower:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.caught_up.wait(0.1):
            if self.error is not None:
                raise RuntimeError(f"{self._topic}: cannot read the table: {self.error}") from self.error
            if time.monotonic() > deadline:
                break
        if not self.caught_up.is_set():
            raise TimeoutError(f"{self._topic}: could not read the table within {timeout:.0f}s")
        return self

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as exc:
            self.error = exc
            log.exception("table follower stopped", topic=self._topic)
        finally:
            self._consumer.close()

    def _follow(self) -> None:
        pending = _assign_all(self._consumer, self._topic, 10.0)
        if not pending:
            self.caught_up.set()
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("table consumer error", topic=self._topic, error=error.str())
                continue
            key, offset, partition = msg.key(), msg.offset(), msg.partition()
            assert offset is not None and partition is not None  # a message without error has both
            if key is not None:
                try:
                    self._on_record(key, msg.value())
                except Exception:  # one bad record must not stop the table (or hide the rest)
                    log.exception("table record not applied", topic=self._topic, offset=offset)
            if pending and offset + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
                if not pending:
                    self.caught_up.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

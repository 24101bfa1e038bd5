"""Compacted topics read as tables: every node reads the whole topic (no consumer
group), first up to its end, then follows it. Used for state every node shares
(writer schemas, spam patterns, POP3 UIDLs, greylisting triplets, the delivery log,
the control topics). ``TableFollower`` follows one in a thread; ``DecodedTable`` keeps
the decoded records of one in a dict."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from core.kafka import make_consumer
from core.logging import get_logger
from core.settings import GatewaySettings
from schemas.codec import default_codec

log = get_logger("tables")

T = TypeVar("T")
OnRecord = Callable[[bytes, bytes | None], None]  # key, value (None: a tombstone)


def _assign_all(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    """Assign every partition from its start; returns partition → end offset (now).

    A topic created a moment ago may not have its leaders yet: those errors are waited out.
    """
    return _retrying(lambda: _assign_all_once(consumer, topic, timeout), timeout)


def _retrying(call: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}


def _watermarks(consumer: Consumer, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise LookupError(f"topic {topic} does not exist: run `mailgate topics create`")
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in meta.partitions}


def _assign_all_once(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    watermarks = _watermarks(consumer, topic, timeout)
    consumer.assign([TopicPartition(topic, p, low) for p, (low, _high) in watermarks.items()])
    return {p: high for p, (low, high) in watermarks.items() if high > low}


def _ends(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    """Partition → end offset now, of the partitions that hold anything (not-ready errors waited out)."""
    return _retrying(lambda: {p: high for p, (low, high) in _watermarks(consumer, topic, timeout).items()
                              if high > low}, timeout)


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
    """Follows a compacted topic in a thread, calling ``on_record(key, value)`` for each record
    (value None: a tombstone) — the one follower of every table (spam patterns, greylisting,
    the delivery log, the control topics).

    ``caught_up`` is set once everything that was in the topic at start has been applied;
    ``wait_caught_up`` waits for what was in it at the time of the call (read your writes).
    A record ``on_record`` cannot apply is logged and skipped: it never stops the table.
    """

    def __init__(self, settings: GatewaySettings, topic: str, on_record: OnRecord, name: str = "table") -> None:
        self._consumer = make_consumer(settings, group=f"{topic}.follower", client_id=f"{name}-follower",
                                       **{"enable.partition.eof": True})
        self._settings, self._name = settings, name
        self._topic = topic
        self._on_record = on_record
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self.error: Exception | None = None
        self._seen: dict[int, int] = {}  # partition → next offset to read (its end, once reached)
        self._seen_lock = threading.Lock()
        self._meta: Consumer | None = None  # watermarks for wait_caught_up (the follower is busy in poll)
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
            partition, offset, error = msg.partition() or 0, msg.offset() or 0, msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("table consumer error", topic=self._topic, error=error.str())
                    continue
            elif msg.key() is not None:
                self._apply(msg)
                offset += 1
            with self._seen_lock:  # applied first, then counted as seen: caught up means known
                self._seen[partition] = max(self._seen.get(partition, 0), offset)
            if pending and self._reached(pending):
                pending = {}
                self.caught_up.set()

    def _apply(self, msg: Message) -> None:
        try:
            self._on_record(msg.key() or b"", msg.value())
        except Exception:  # one bad record must not stop the table (or hide the rest)
            log.exception("table record not applied", topic=self._topic, offset=msg.offset())

    def _reached(self, ends: dict[int, int]) -> bool:
        with self._seen_lock:
            return all(self._seen.get(p, 0) >= end for p, end in ends.items())

    def wait_caught_up(self, timeout: float = 30.0) -> bool:
        """Blocks until everything written to the topic before this call has been applied."""
        if self._meta is None:
            self._meta = make_consumer(self._settings, group=f"{self._topic}.meta", client_id=f"{self._name}-meta")
        deadline = time.monotonic() + timeout
        ends = _ends(self._meta, self._topic, timeout)
        while time.monotonic() < deadline:
            if self._reached(ends):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._meta is not None:
            self._meta.close()
            self._meta = None


class DecodedTable:
    """A compacted topic of one event type, followed and decoded: key → record.

    A record that cannot be decoded is skipped with a warning (the key keeps its last
    readable value). ``on_change(key, record)`` (record None: removed) is called from the
    follower's thread after the table changed.
    """

    def __init__(self, settings: GatewaySettings, topic: str, event_type: str,
                 on_change: Callable[[str, dict[str, Any] | None], None] | None = None, name: str = "table") -> None:
        self.event_type = event_type
        self._records: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()  # notified on every change (for waiters on the table)
        self._on_change = on_change
        self._follower = TableFollower(settings, topic, self._apply, name=name)

    def _apply(self, raw_key: bytes, value: bytes | None) -> None:
        key = raw_key.decode(errors="replace")
        try:
            record = default_codec().decode(value, expect=self.event_type).record if value is not None else None
        except ValueError as exc:
            log.warning("unreadable table record skipped", event_type=self.event_type, key=key, error=str(exc))
            return
        with self.changed:
            if record is None:
                self._records.pop(key, None)
            else:
                self._records[key] = record
            self.changed.notify_all()
        if self._on_change is not None:
            self._on_change(key, record)

    def start(self, timeout: float = 30.0) -> DecodedTable:
        self._follower.start(timeout)
        return self

    def stop(self) -> None:
        self._follower.stop()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.changed:
            return dict(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        with self.changed:
            return self._records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """A record this process wrote and the broker acknowledged: known before it comes round."""
        with self.changed:
            self._records[key] = record
            self.changed.notify_all()

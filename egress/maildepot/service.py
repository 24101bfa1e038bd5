"""Entry point of maildepot-archiver: `mailgate service maildepot-archiver`.

Consumes archive.spool (consumer group ``mailgate.maildepot-archiver``) in batches:
each batch is stored in one transaction of the archive store, and only then are
its offsets committed. A restart therefore re-reads at most the last uncommitted
batch, which the store skips by mail id: every mail is stored once. Removes
expired mail every ``maildepot.sweep_interval_s``. Answers the archive's questions (search, export,
verify, hold, retention) from any node over archive.requests/replies (``asked.py``). Its metrics:
egress/maildepot/metrics.py.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from core.control_channel import ControlChannel
from core.kafka import make_consumer, make_producer
from core.logging import get_logger
from core.poison import Poison
from core.publish import Encoder
from egress.maildepot.settings import Settings
from egress.maildepot import metrics
from egress.maildepot.asked import Asked
from egress.maildepot.store import ArchiveStore
from schemas import DecodeError, default_codec
from schemas.topics import ARCHIVE_SPOOL, MAIL_QUARANTINE, TopicNames

log = get_logger("maildepot-archiver")
SERVICE = metrics.SERVICE


class Archiver:
    def __init__(self, settings: Settings, store: ArchiveStore) -> None:
        self.settings, self.store = settings, store
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.codec = default_codec()
        self.encoder = Encoder(self.codec)
        self.poison = Poison(SERVICE, settings.node)
        # Static membership: a restarted archiver (crash, kill -9, the engine's restart) takes its
        # partitions back at once instead of waiting out the dead member's session timeout.
        self.consumer: Consumer = make_consumer(settings, self.names.group(SERVICE), SERVICE,
                                                **{"group.instance.id": f"{settings.node}.{SERVICE}"})
        self.producer: Producer = make_producer(settings, SERVICE)
        self.stopping = threading.Event()
        self.want_pause = False  # set by the control channel's thread, applied by the loop
        self.paused = False
        self.next_sweep = 0.0

    def _decode(self, msg: Message) -> dict[str, Any] | None:
        try:
            return self.codec.decode(msg.value() or b"", expect="ArchiveSpooled").record
        except DecodeError as exc:  # poison policy: kept whole on mail.quarantine, the partition moves on
            record = self.poison.unreadable(msg.value(), exc, msg.key(), msg.headers())
            key, value, headers = self.encoder.envelope(record)
            self.producer.produce(self.names(MAIL_QUARANTINE), key=key, value=value, headers=headers)
            return None

    def handle(self, msgs: list[Message]) -> None:
        records, ends, unreadable = [], {}, 0
        for msg in msgs:
            if msg.error() is not None:
                log.warning("consumer error", error=str(msg.error()))
                continue
            ends[(msg.topic(), msg.partition())] = msg.offset() + 1
            record = self._decode(msg)
            if record is None:
                unreadable += 1
            else:
                records.append(record)
        if self.producer.flush(self.settings.kafka.produce_timeout_s):
            raise RuntimeError("quarantined records not acknowledged; not committing")
        metrics.QUARANTINED.inc(unreadable)
        if records:
            started = time.monotonic()
            done = self.store.store_batch(records, self.settings.maildepot.retention_days)
            metrics.count_batch(done, time.monotonic() - started)
            for mail_id in done.stored:
                log.info("archived", mail_id=mail_id)
            for mail_id in done.duplicates:
                log.info("already archived", mail_id=mail_id)
        if ends:  # after the store's commit: a crash before this re-reads the batch, which the store skips
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                                     asynchronous=False)
            except KafkaException as exc:  # a rebalance took the partition: its next owner skips the batch
                log.warning("offsets not committed", error=str(exc))

    def _apply_pause(self) -> None:
        if self.want_pause != self.paused:
            parts = self.consumer.assignment()
            (self.consumer.pause if self.want_pause else self.consumer.resume)(parts)
            self.paused = self.want_pause

    def _sweep_if_due(self) -> None:
        if time.monotonic() < self.next_sweep:
            return
        self.next_sweep = time.monotonic() + self.settings.maildepot.sweep_interval_s
        removed = self.store.sweep()
        metrics.EXPIRED.inc(len(removed))
        for row in removed:
            log.info("expired mail removed", mail_id=row["mail_id"], rule=row["rule"], audit="expired")

    def run(self) -> None:
        self.consumer.subscribe([self.names(ARCHIVE_SPOOL)],
                                on_assign=lambda c, parts: c.pause(parts) if self.paused else None)
        try:
            while not self.stopping.is_set():
                self._apply_pause()
                msgs = self.consumer.consume(num_messages=self.settings.maildepot.batch, timeout=0.5)
                if msgs:
                    self.handle(msgs)
                self._sweep_if_due()
        finally:
            self.consumer.close()
            self.producer.flush(5)


def run(settings: Settings) -> None:
    """Runs until SIGTERM/SIGINT."""
    store = ArchiveStore(settings.maildepot.path(settings.home), level=settings.maildepot.compression_level)
    archiver = Archiver(settings, store)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: archiver.stopping.set())
    channel = ControlChannel(settings, SERVICE, pause=lambda: setattr(archiver, "want_pause", True),
                             resume=lambda: setattr(archiver, "want_pause", False))
    try:
        channel.start()
    except (LookupError, TimeoutError) as exc:
        log.error("no control channel: pause/resume will not be obeyed", error=str(exc))
    log.info("archiving", store=str(store.directory), mails=store.count())
    try:
        asked: Asked | None = Asked(settings, store.directory, archiver.stopping)  # before run() joins its group
    except KafkaException as exc:  # archiving goes on; only the questions wait for the topic
        log.error("archive.requests unreadable: questions to the archive are not answered until it exists "
                  "(`mailgate topics create`) and the archiver restarts", error=str(exc))
        asked = None
    if asked is not None:
        asked.start()
    try:
        archiver.run()
    finally:
        if asked is not None:
            asked.join(10)
        channel.stop()
        store.close()

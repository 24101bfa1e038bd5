"""maildepot-archiver: the thread that answers the archive's questions over Kafka.

Every archiver reads archive.requests (one partition, no consumer group: each archiver sees every
question, from where the topic ended when it started) and answers each on archive.replies with
``answers.answer`` on its own connection to the store (read-only for search, export, verify). A
question past its ``expires_ms`` is skipped: its asker has given up, and a late hold or sweep
would surprise.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from core.kafka import make_consumer, make_producer
from core.logging import get_logger
from core.publish import Encoder
from egress.maildepot.settings import Settings
from egress.maildepot.answers import READ_ONLY, Refused, answer, open_store
from schemas import DecodeError, default_codec
from schemas.topics import ARCHIVE_REPLIES, ARCHIVE_REQUESTS, TopicNames

log = get_logger("maildepot-archiver")


class Asked(threading.Thread):
    def __init__(self, settings: Settings, directory: Path, stopping: threading.Event) -> None:
        super().__init__(name="archive-asked", daemon=True)
        self.settings, self.directory, self.stopping = settings, directory, stopping
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.codec = default_codec()
        self.encoder = Encoder(self.codec)
        self.consumer = make_consumer(settings, self.names.group("maildepot-archiver.asked"), "maildepot-asked")
        self.producer = make_producer(settings, "maildepot-asked")
        topic = self.names(ARCHIVE_REQUESTS)
        # The end resolved now, before the archiver joins its group: a question asked once the
        # archiver is seen running is never before where this reader starts.
        _, end = self.consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=settings.kafka.produce_timeout_s)
        self.consumer.assign([TopicPartition(topic, 0, end)])
        log.info("answering archive questions", topic=topic, offset=end)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                msg = self.consumer.poll(0.5)
                if msg is not None:
                    self._handle(msg)
        finally:
            self.consumer.close()
            self.producer.flush(5)

    def _handle(self, msg: Message) -> None:
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("archive.requests error", error=str(msg.error()))
            return
        try:
            request = self.codec.decode(msg.value() or b"", expect="ArchiveRequest").record
        except DecodeError as exc:  # nobody can be waiting for an answer to what cannot be read
            log.warning("unreadable archive request skipped", offset=msg.offset(), reason=str(exc))
            return
        if request["expires_ms"] < time.time() * 1000:
            log.info("archive request expired before it was read", mail_id=request["mail_id"],
                     action=request["action"])
            return
        self.respond(request)

    def respond(self, request: dict[str, Any]) -> None:
        seq = 0

        def reply(kind: str, **fields: Any) -> None:
            nonlocal seq
            self._send(request["mail_id"], seq, kind, fields)
            seq += 1

        started = time.monotonic()
        reply("started")  # the asker knows an archiver is at it, however long a verify takes
        try:
            store = open_store(self.directory, self.settings.maildepot.compression_level,
                               readonly=request["action"] in READ_ONLY)
            try:
                answer(store, request, reply)
            finally:
                store.close()
        except Refused as exc:
            reply("error", code=exc.code, message=str(exc))
        except Exception as exc:  # an answer, not silence: the asker learns what went wrong
            log.exception("archive request failed", mail_id=request["mail_id"], action=request["action"])
            reply("error", code="INTERNAL", message=f"the archiver on {self.settings.node} failed: {exc}")
        self.producer.flush(self.settings.kafka.produce_timeout_s)
        log.info("archive request answered", mail_id=request["mail_id"], action=request["action"],
                 actor=request["actor"], replies=seq, seconds=round(time.monotonic() - started, 3))

    def _send(self, request_id: str, seq: int, kind: str, fields: dict[str, Any]) -> None:
        record = {"mail_id": request_id, "event_time": int(time.time() * 1000), "node": self.settings.node,
                  "seq": seq, "kind": kind, "row": None, "chunk_of": "", "data": b"", "last": False, "code": "",
                  "message": "", "counts": {}, "mail_ids": [], **fields}
        key, value, headers = self.encoder.envelope(record, event_type="ArchiveReply")
        while True:
            try:
                self.producer.produce(self.names(ARCHIVE_REPLIES), key=key, value=value, headers=[*headers])
                return
            except BufferError:  # a large export outruns the broker: wait for room, never drop a piece
                self.producer.poll(0.5)

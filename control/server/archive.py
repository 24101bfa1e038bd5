"""control-server and `mailgate archive`: questions to the archive, asked over Kafka.

The store lives with maildepot-archiver, on whichever node runs it; this module never opens it.
A question is an ArchiveRequest on archive.requests; every archiver answers it with numbered
ArchiveReply records on archive.replies, and the answer of the first archiver to reply is taken
(one store per gateway today; see control/README.md). So any node's control server or CLI
answers a search. The archiver checks the query; its refusals come back as InvalidArgument /
NotFound before any row, and no answer in time is Unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from control.server.errors import InvalidArgument, NotFound, Unavailable
from core.kafka import KafkaUnavailable, make_consumer, make_producer
from core.publish import Encoder, produce_and_wait
from control.settings import Settings
from schemas import DecodeError, default_codec, new_mail_id
from schemas.topics import ARCHIVE_REPLIES, ARCHIVE_REQUESTS, TopicNames

FIRST_REPLY_S = 15.0  # an archiver polls every 0.5 s; more than this: none is running (or Kafka is down)
NEXT_REPLY_S = 300.0  # between two replies of one answer (a verify re-hashes every mail before its first)
REFUSALS = {"INVALID_ARGUMENT": InvalidArgument, "NOT_FOUND": NotFound}


@dataclass
class Done:
    """An answer's end: its counts and mail ids, the problems (verify) and rows (retention) before it."""
    counts: dict[str, int] = field(default_factory=dict)
    mail_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def ask(settings: Settings, action: str, actor: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """The ArchiveReply records of one archiver's answer, in order, ending with the ``done`` one.
    ``fields``: those of the ArchiveRequest (the query: sender, recipient, subject, text, since_ms,
    until_ms, mail_ids, limit, offset; format; reason); the archiver checks them."""
    names, codec = TopicNames(settings.kafka.topic_prefix), default_codec()
    consumer = _replies_from_now(settings, names)
    try:
        request_id = _send(settings, names, action, actor, fields)
        yield from one_answer(_replies(consumer, codec, request_id))
    finally:
        consumer.close()


def one_answer(replies: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The first answering node's replies, checked for gaps, up to its ``done``; its error raised."""
    node, seq = None, 0
    for reply in replies:
        if node is None:
            node = reply["node"]
        if reply["node"] != node:  # a second archiver answering too: the first one's answer is taken
            continue
        if reply["seq"] != seq:
            raise Unavailable(f"the answer of the archiver on {node} is incomplete (reply {seq} missing)")
        seq += 1
        if reply["kind"] == "error":
            raise REFUSALS.get(reply["code"], Unavailable)(reply["message"])
        yield reply
        if reply["kind"] == "done":
            return


def search(settings: Settings, query: dict[str, Any], actor: str) -> list[dict[str, Any]]:
    return [r["row"] for r in ask(settings, "search", actor, **query) if r["kind"] == "row"]


def export(settings: Settings, query: dict[str, Any], fmt: str, actor: str) -> Iterator[tuple[str, bytes, bool]]:
    """(mail id, piece of its bytes, last piece) per chunk: an export may be larger than memory."""
    for r in ask(settings, "export", actor, **query, format=fmt):
        if r["kind"] == "chunk":
            yield r["chunk_of"], r["data"], r["last"]


def finished(settings: Settings, action: str, actor: str, **fields: Any) -> Done:
    """verify, hold, release or retention: the whole answer."""
    done = Done()
    for r in ask(settings, action, actor, **fields):
        if r["kind"] == "problem":
            done.problems.append(r["message"])
        elif r["kind"] == "row":
            done.rows.append(r["row"])
        elif r["kind"] == "done":
            done.counts, done.mail_ids = dict(r["counts"]), list(r["mail_ids"])
    return done


def _replies_from_now(settings: Settings, names: TopicNames) -> Consumer:
    """A reader of archive.replies placed at its end before the question is asked (no reply missed)."""
    topic = names(ARCHIVE_REPLIES)
    consumer = make_consumer(settings, names.group("archive-asker"), "archive-asker")
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=settings.kafka.produce_timeout_s)
    except KafkaException as exc:
        consumer.close()
        raise Unavailable(f"cannot read {topic} ({exc}): is Kafka up and were the topics created?") from exc
    consumer.assign([TopicPartition(topic, 0, end)])
    return consumer


def _send(settings: Settings, names: TopicNames, action: str, actor: str, fields: dict[str, Any]) -> str:
    request_id, now = new_mail_id(), int(time.time() * 1000)
    record = {"mail_id": request_id, "event_time": now, "node": settings.node, "actor": actor, "action": action,
              "expires_ms": now + int(FIRST_REPLY_S * 1000), "sender": "", "recipient": "", "subject": "",
              "text": "", "since_ms": None, "until_ms": None, "mail_ids": [], "limit": 100, "offset": 0,
              "format": "", "reason": None, **fields}
    producer = make_producer(settings, "archive-asker")
    try:
        produce_and_wait(producer, names(ARCHIVE_REQUESTS), Encoder().envelope(record, event_type="ArchiveRequest"),
                         settings.kafka.produce_timeout_s)
    except KafkaUnavailable as exc:
        raise Unavailable(f"Kafka did not take the archive request within {settings.kafka.produce_timeout_s} s"
                          f" ({exc})") from exc
    return request_id


def _replies(consumer: Consumer, codec: Any, request_id: str) -> Iterator[dict[str, Any]]:
    deadline = time.monotonic() + FIRST_REPLY_S
    while True:
        msg = consumer.poll(max(0.0, min(1.0, deadline - time.monotonic())))
        if msg is None or msg.error() is not None:
            if msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                raise Unavailable(f"archive.replies: {msg.error()}")
            if time.monotonic() >= deadline:
                raise Unavailable(f"no maildepot-archiver answered within {FIRST_REPLY_S:.0f} s (is it running? "
                                  "`mailgate services list`)")
            continue
        if (msg.key() or b"") != request_id.encode():
            continue
        try:
            reply = codec.decode(msg.value() or b"", expect="ArchiveReply").record
        except DecodeError as exc:
            raise Unavailable(f"an unreadable archive reply: {exc}") from exc
        deadline = time.monotonic() + NEXT_REPLY_S
        yield reply

"""control/cli — "what happened to mail X for recipient Y", from Kafka alone.

smtp-client writes one MailDelivered or DeliveryFailed event per attempt and reply to
``mail.delivery`` (key: the mail id). This reads the topic to its end, keeps the events
of one mail, and tells for each recipient its attempts and where it stands: delivered,
deferred (with the time of the next attempt), bounced (with the bounce's own fate) or
failed without a bounce (a bounce is never bounced). Used by `mailgate delivery show`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from core.kafka import make_consumer
from core.settings import Settings
from schemas import DecodeError, default_codec
from schemas.topics import TopicNames

EVENT_TYPES = ("MailDelivered", "DeliveryFailed")


@dataclass(frozen=True)
class Attempt:
    """One event of mail.delivery, as far as it concerns one recipient."""

    event_time: int  # ms since the epoch
    event: str  # MailDelivered or DeliveryFailed
    attempt: int
    reply: str
    next_hop: str
    tls: str | None
    permanent: bool = False
    next_attempt_time: int | None = None
    bounce_mail_id: str | None = None

    @property
    def status(self) -> str:
        if self.event == "MailDelivered":
            return "delivered"
        if not self.permanent:
            return "deferred"
        return "bounced" if self.bounce_mail_id else "failed, no bounce (null sender)"


@dataclass
class MailHistory:
    mail_id: str
    recipients: dict[str, list[Attempt]] = field(default_factory=dict)
    bounces: dict[str, MailHistory] = field(default_factory=dict)  # bounce mail id → its own history
    unreadable: int = 0  # events of this mail the codec could not read

    def status(self, rcpt: str) -> str:
        """Where the recipient stands: the last word of its events (delivered and bounced are final)."""
        attempts = self.recipients.get(rcpt, [])
        final = [a for a in attempts if a.event == "MailDelivered" or a.permanent]
        return (final or attempts)[-1].status if attempts else "no delivery event"


def _attempts(event: str, record: dict[str, Any]) -> dict[str, Attempt]:
    reply = f"{record['reply_code']} {record['reply_text']}" if record.get("reply_code") else record["reply_text"]
    tls = " ".join(x for x in (record.get("tls_version"), record.get("tls_cipher")) if x) or None
    one = Attempt(record["event_time"], event, record["attempt"], reply, record["next_hop"], tls,
                  bool(record.get("permanent")), record.get("next_attempt_time"), record.get("bounce_mail_id"))
    return {rcpt: one for rcpt in record["rcpt_to"]}


def _scan(settings: Settings, topic: str, keys: set[bytes], timeout: float) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of ``topic`` whose key is one of ``keys``, from its start to its end now."""
    consumer = make_consumer(settings, f"{topic}.history-reader", "delivery-history",
                             **{"enable.partition.eof": True})
    found: list[tuple[bytes, bytes]] = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"topic {topic} does not exist: run `mailgate topics create`")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in meta.partitions}
        left = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:.0f}s")
            for msg in consumer.consume(500, 0.5):
                err, partition, key, value = msg.error(), msg.partition() or 0, msg.key(), msg.value()
                if err is None and isinstance(key, bytes) and key in keys and value is not None:
                    found.append((key, value))
                at_end = err is not None and err.code() == KafkaError._PARTITION_EOF
                if at_end or err is None and (msg.offset() or 0) + 1 >= ends[partition][1]:
                    left.discard(partition)
    finally:
        consumer.close()
    return found


def mail_history(settings: Settings, mail_id: str, timeout: float = 30.0) -> MailHistory:
    """The delivery history of a mail, and of the bounces sent for it (one level deep)."""
    codec = default_codec()
    topic = TopicNames(settings.kafka.topic_prefix).mail_delivery
    histories: dict[str, MailHistory] = {}
    wanted = {mail_id}
    for _ in range(2):  # the mail, then its bounces (a bounce is never bounced)
        for key, value in _scan(settings, topic, {k.encode() for k in wanted}, timeout):
            history = histories.setdefault(key.decode(), MailHistory(key.decode()))
            try:
                event = codec.decode(value)
            except DecodeError:
                history.unreadable += 1
                continue
            if event.type in EVENT_TYPES:
                for rcpt, attempt in _attempts(event.type, event.record).items():
                    history.recipients.setdefault(rcpt, []).append(attempt)
        main = histories.setdefault(mail_id, MailHistory(mail_id))
        wanted = {a.bounce_mail_id for steps in main.recipients.values() for a in steps if a.bounce_mail_id}
        wanted -= set(histories)
        if not wanted:
            break
    main = histories[mail_id]
    for steps in main.recipients.values():
        steps.sort(key=lambda a: (a.event_time, a.attempt))
        for bounce_id in {a.bounce_mail_id for a in steps if a.bounce_mail_id}:
            main.bounces[bounce_id] = histories.get(bounce_id) or MailHistory(bounce_id)
    return main

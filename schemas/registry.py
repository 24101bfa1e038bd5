"""Writer schemas this process does not ship, looked up in the compacted schemas
topic (key: fingerprint hex, value: canonical schema JSON).

`mailgate topics create` publishes every shipped schema there, so that a reader
of an older release can still resolve records written by a newer one.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from core.kafka import make_consumer
from core.settings import Settings
from schemas.codec import Codec, Resolver
from schemas.topics import TopicNames


def load_schema_topic(settings: Settings, timeout: float = 10.0) -> dict[bytes, str]:
    topic = TopicNames(settings.kafka.topic_prefix).schemas
    consumer = make_consumer(settings, group=f"{topic}.reader", client_id="schema-reader")
    found: dict[bytes, str] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return found
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=timeout)[1] for p in parts}
        consumer.assign(parts)
        pending = {p for p, end in ends.items() if end > 0}
        while pending:
            msg = consumer.poll(timeout)
            if msg is None:
                break
            if msg.error() is None and msg.key() and msg.value():
                found[bytes.fromhex(msg.key().decode())] = msg.value().decode()
            if msg.offset() is not None and msg.offset() + 1 >= ends.get(msg.partition(), 0):
                pending.discard(msg.partition())
    finally:
        consumer.close()
    return found


def kafka_resolver(settings: Settings) -> Resolver:
    cache: dict[bytes, str] = {}

    def resolve(fp: bytes) -> str | None:
        if fp not in cache:
            cache.update(load_schema_topic(settings))
        return cache.get(fp)

    return resolve


def codec_for(settings: Settings) -> Codec:
    """The shipped schemas, plus any newer writer schema found in the schemas topic."""
    return Codec.from_dir(resolver=kafka_resolver(settings))

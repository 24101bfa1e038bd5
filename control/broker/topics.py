"""control/broker — `mailgate topics create`: make every topic of the map, idempotently, and
publish the shipped Avro schemas to the schemas topic."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from core.kafka import make_admin, make_producer, max_record_bytes
from core.settings import Settings
from schemas import default_codec
from schemas.topics import TOPICS, TopicNames, TopicSpec


@dataclass
class TopicResult:
    name: str
    partitions: int
    compacted: bool
    status: str  # created | exists


def topic_config(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    config = {"max.message.bytes": str(max_record_bytes(settings) if spec.carries_mail else 1048588)}
    if spec.compacted:
        config |= {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}
    if spec.retention_ms is not None:
        config |= {"retention.ms": str(spec.retention_ms), "segment.ms": str(spec.retention_ms)}
    if settings.kafka.replication_factor > 1:
        config["min.insync.replicas"] = str(min(2, settings.kafka.replication_factor))
    return config


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[TopicResult]:
    names = TopicNames(settings.kafka.topic_prefix)
    admin = make_admin(settings)
    existing = admin.list_topics(timeout=min(timeout, 10.0)).topics  # a dead broker: fail fast
    results: list[TopicResult] = []
    wanted: list[tuple[TopicSpec, NewTopic]] = []
    for spec in TOPICS:
        name = names(spec.name)
        partitions = spec.partitions or settings.kafka.partitions
        if name in existing:
            results.append(TopicResult(name, len(existing[name].partitions), spec.compacted, "exists"))
            continue
        new = NewTopic(name, num_partitions=partitions, replication_factor=settings.kafka.replication_factor,
                       config=topic_config(spec, settings))
        wanted.append((spec, new))
    if wanted:
        futures = admin.create_topics([n for _, n in wanted], operation_timeout=timeout, request_timeout=timeout)
        for spec, new in wanted:
            try:
                futures[new.topic].result()
                status = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                status = "exists"
            results.append(TopicResult(new.topic, new.num_partitions, spec.compacted, status))
    publish_schemas(settings)
    return results


def publish_schemas(settings: Settings) -> int:
    """Write every shipped writer schema to the compacted schemas topic (key: fingerprint hex)."""
    topic = TopicNames(settings.kafka.topic_prefix).schemas
    producer = make_producer(settings, "schemas")
    known = default_codec().known_schemas()
    for fp, text in known.items():
        producer.produce(topic, key=fp.hex().encode(), value=text.encode())
    left = producer.flush(30)
    if left:
        raise RuntimeError(f"{left} schema records not acknowledged by {settings.bootstrap_servers}")
    return len(known)


def topic_sizes(settings: Settings, timeout: float = 10.0) -> dict[str, tuple[int, int]]:
    """Topic → (partitions, records held): 0 partitions when the topic is missing."""
    from confluent_kafka import TopicPartition

    from core.kafka import make_consumer

    names = TopicNames(settings.kafka.topic_prefix)
    consumer = make_consumer(settings, group=names.group("inspector"), client_id="inspector")
    try:
        meta = consumer.list_topics(timeout=timeout).topics
        sizes: dict[str, tuple[int, int]] = {}
        for spec in TOPICS:
            name = names(spec.name)
            if name not in meta:
                sizes[name] = (0, 0)
                continue
            total = 0
            for p in meta[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)
                total += high - low
            sizes[name] = (len(meta[name].partitions), total)
        return sizes
    finally:
        consumer.close()

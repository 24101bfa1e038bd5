"""Reading a topic back in a test: every record, decoded, with its headers."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

from core.kafka import make_consumer
from control.settings import Settings
from schemas import default_codec


@dataclass
class Record:
    key: bytes | None
    headers: dict[str, str]
    event_type: str
    value: dict


def read_topic(settings: Settings, topic: str, timeout: float = 10.0) -> list[Record]:
    # EOF events: a partition written in transactions ends with a commit marker, not a record.
    consumer = make_consumer(settings, group=f"{topic}.test-reader", client_id="test-reader",
                             **{"enable.partition.eof": True})
    codec = default_codec()
    records: list[Record] = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in meta.partitions}
        pending = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in meta.partitions])
        while pending:
            msg = consumer.poll(timeout)
            if msg is None:
                raise AssertionError(f"{topic}: partitions {sorted(pending)} not read to their end")
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            event = codec.decode(msg.value())
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            records.append(Record(msg.key(), headers, event.type, event.record))
            if msg.offset() + 1 >= ends[msg.partition()][1]:
                pending.discard(msg.partition())
    finally:
        consumer.close()
    return records

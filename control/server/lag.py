"""control-server: queue depth from consumer-group lag, through the Kafka admin API.

depth = for each partition, the end offset (last stable offset) minus the group's
committed offset (the start offset when it committed none), summed; lag_seconds =
the age of the oldest record still waiting (read at the committed position).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec

from core.kafka import make_admin, make_consumer
from core.settings import Settings
from schemas.topics import TopicNames


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    depth: int
    lag_seconds: float
    waiting_from: dict[int, int] = field(default_factory=dict)  # partition → first waiting offset


class LagReader:
    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.admin = make_admin(settings)
        # Only to read the timestamp of the oldest waiting record: small fetches, no commits.
        self._consumer = make_consumer(settings, TopicNames(settings.kafka.topic_prefix).group("control-lag"),
                                       "control-lag", **{"fetch.max.bytes": 1048576,
                                                         "max.partition.fetch.bytes": 65536})
        self._lock = threading.Lock()

    def close(self) -> None:
        self._consumer.close()

    def lag(self, group: str, topic: str) -> GroupLag:
        meta = self.admin.list_topics(topic, timeout=self.timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"topic {topic} does not exist: run `mailgate topics create`")
        tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        request = [ConsumerGroupTopicPartitions(group, tps)]
        committed = {tp.partition: tp.offset for tp in self.admin.list_consumer_group_offsets(
            request, request_timeout=self.timeout)[group].result(self.timeout).topic_partitions}
        ends = self._offsets(tps, OffsetSpec.latest())
        starts = self._offsets(tps, OffsetSpec.earliest())
        waiting: dict[int, int] = {}
        depth = 0
        for p, end in ends.items():
            position = max(committed.get(p, -1), starts[p])  # no commit yet: from the start (earliest)
            if end > position:
                depth += end - position
                waiting[p] = position
        oldest = self._oldest_ms(topic, waiting) if waiting else None
        lag_s = max(0.0, time.time() - oldest / 1000) if oldest else 0.0
        return GroupLag(group, topic, depth, lag_s, waiting)

    def _offsets(self, tps: list[TopicPartition], spec: OffsetSpec) -> dict[int, int]:
        futures = self.admin.list_offsets({tp: spec for tp in tps}, request_timeout=self.timeout,
                                           isolation_level=IsolationLevel.READ_COMMITTED)
        return {tp.partition: f.result(self.timeout).offset for tp, f in futures.items()}

    def _oldest_ms(self, topic: str, waiting: dict[int, int]) -> int | None:
        with self._lock:
            self._consumer.assign([TopicPartition(topic, p, o) for p, o in waiting.items()])
            try:
                stamps: dict[int, int] = {}
                deadline = time.monotonic() + min(self.timeout, 2.0)
                while len(stamps) < len(waiting) and time.monotonic() < deadline:
                    for msg in self._consumer.consume(len(waiting), 0.2):
                        partition = msg.partition()
                        if msg.error() is None and partition is not None and partition not in stamps:
                            stamps[partition] = msg.timestamp()[1]
                            self._consumer.pause([TopicPartition(topic, partition)])
                return min(stamps.values()) if stamps else None
            finally:
                self._consumer.unassign()

"""control-server: the metrics that Kafka knows, on control-server's /metrics.

- mailgate_queue_records{queue}: records held per topic (end minus start offsets);
- mailgate_consumer_lag_records{group,topic}: what each service's group has not consumed;
- mailgate_rejections_total{service="smtp-server",reason}: smtp.rejected, by the filter that refused;
- mailgate_latency_seconds{service="gateway",step="received_to_delivered"}: mail.delivery's
  MailDelivered time minus the time in the mail id (when smtp-server accepted it).

Counters count from when control-server started (the topics are followed from their end).
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import OFFSET_END, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from control.engine.services import SERVICES
from control.server.plane import ControlPlane
from core.kafka import make_consumer
from core.logging import get_logger
from core.metrics import LAG, LATENCY, QUEUE_RECORDS, REJECTIONS
from core.settings import Settings
from schemas import DecodeError, default_codec
from schemas.ids import mail_id_time_ms
from schemas.topics import MAIL_DELIVERY, SMTP_REJECTED, TOPICS, TopicNames

log = get_logger("control-server")


def rejection_reason(record: dict[str, Any]) -> str:
    """The filter whose verdict refused the transaction (few values: fit for a label)."""
    verdicts = [v for v in record.get("verdicts") or [] if isinstance(v, dict)]
    refusing = [v for v in verdicts if v.get("action") in ("REJECT", "TEMPFAIL")]
    return str((refusing or verdicts or [{"filter": f"status {record.get('status', '')}"}])[-1]["filter"])


class MetricsFeed:
    def __init__(self, settings: Settings, plane: ControlPlane, interval_s: float = 10.0) -> None:
        self.settings, self.plane, self.interval_s = settings, plane, interval_s
        self.names = TopicNames(settings.kafka.topic_prefix)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sizes, name="metrics-sizes", daemon=True),
                         threading.Thread(target=self._follow, name="metrics-events", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _sizes(self) -> None:
        admin = self.plane.lag.admin
        while True:
            try:
                topics = [self.names(s.name) for s in TOPICS if not s.compacted]
                meta = admin.list_topics(timeout=5).topics
                tps = [TopicPartition(t, p) for t in topics if t in meta for p in meta[t].partitions]
                ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps})
                starts = admin.list_offsets({tp: OffsetSpec.earliest() for tp in tps})
                held: dict[str, int] = {}
                for tp in tps:
                    held[tp.topic] = held.get(tp.topic, 0) + ends[tp].result(5).offset - starts[tp].result(5).offset
                for topic, count in held.items():
                    QUEUE_RECORDS.labels(queue=topic.removeprefix(self.names.prefix)).set(count)
                for name, svc in SERVICES.items():
                    group = svc.group(self.settings)
                    if group and svc.consumes:
                        lag = self.plane.lag.lag(group, self.names(svc.consumes))
                        LAG.labels(group=group, topic=lag.topic).set(lag.depth)
            except (KafkaException, LookupError) as exc:
                log.warning("queue metrics not refreshed", error=str(exc))
            if self._stop.wait(self.interval_s):
                return

    def _follow(self) -> None:
        consumer = make_consumer(self.settings, self.names.group("control-metrics"), "control-metrics")
        codec = default_codec()
        try:
            topics = [self.names(SMTP_REJECTED), self.names(MAIL_DELIVERY)]
            meta = consumer.list_topics(timeout=10).topics
            consumer.assign([TopicPartition(t, p, OFFSET_END) for t in topics if t in meta
                             for p in meta[t].partitions])
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.5):
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    try:
                        event = codec.decode(value)
                    except DecodeError:
                        continue
                    if event.type == "SmtpRejected":
                        REJECTIONS.labels(service="smtp-server", reason=rejection_reason(event.record)).inc()
                    elif event.type == "MailDelivered":
                        seconds = (event.record["event_time"] - mail_id_time_ms(event.record["mail_id"])) / 1000
                        LATENCY.labels(service="gateway", step="received_to_delivered").observe(max(seconds, 0))
        except KafkaException as exc:
            log.warning("event metrics stopped", error=str(exc))
        finally:
            consumer.close()

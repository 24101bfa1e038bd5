"""Each queue topic's retention is set on purpose (real broker): from the settings when it
is made, and again for a topic that exists when the setting changed."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import ConfigResource

from control.broker.retention import DAY_MS, QueueRetentionSettings
from control.broker.topics import ensure_topics
from core.kafka import make_admin
from control.settings import Settings
from core.settings import KafkaSettings
from schemas.topics import TOPICS
from tests.support.kafka import Broker


def retention_of(settings: Settings) -> dict[str, dict[str, str]]:
    prefix = settings.kafka.topic_prefix
    resources = [ConfigResource(ConfigResource.Type.TOPIC, prefix + spec.name) for spec in TOPICS]
    admin = make_admin(settings)  # held until the answers are in
    described = admin.describe_configs(resources)
    return {r.name.removeprefix(prefix): {k: e.value for k, e in f.result().items()
                                          if k in ("retention.ms", "retention.bytes", "cleanup.policy")}
            for r, f in described.items()}


def test_queue_retention_is_set_at_creation_and_updated_on_existing_topics(broker: Broker) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
                          partitions=1)
    first = Settings(kafka=kafka, retention=QueueRetentionSettings(spam_days=60))
    results = {r.name.removeprefix(kafka.topic_prefix): r for r in ensure_topics(first)}
    assert results["mail.spam"].retention_days == 60 and results["mail.in"].retention_days == 30
    config = retention_of(first)
    assert config["mail.spam"]["retention.ms"] == str(60 * DAY_MS)
    assert config["mail.virus"]["retention.ms"] == str(30 * DAY_MS)
    assert config["mail.ciss"]["retention.ms"] == str(30 * DAY_MS)
    assert config["mail.in"]["retention.bytes"] == "-1"
    assert config["ciss.senders"]["cleanup.policy"] == "compact"  # state topics keep the latest per key

    later = Settings(kafka=kafka, retention=QueueRetentionSettings(spam_days=90, ciss_days=21, default_days=10))
    assert {r.status for r in ensure_topics(later)} == {"exists"}
    config = retention_of(later)
    assert config["mail.spam"]["retention.ms"] == str(90 * DAY_MS)
    assert config["mail.ciss"]["retention.ms"] == str(21 * DAY_MS)
    assert config["mail.out"]["retention.ms"] == str(10 * DAY_MS)
    assert config["mail.quarantine"]["retention.ms"] == str(30 * DAY_MS)

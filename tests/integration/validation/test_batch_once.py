"""A mail id twice on mail.scored (spam-filter processed it again), the copies side by side so
that they fall into one batch of message-validation: routed once, the copy skipped, though no
mark of it existed when the batch was taken (streams/validation/once.py)."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from control.broker.topics import ensure_topics
from core.kafka import make_producer
from core.settings import KafkaSettings, Settings
from schemas import default_codec
from schemas.topics import TopicNames
from tests.integration.validation.test_validation_kill_9 import all_committed, scored, start, wait_for
from tests.support.kafka import Broker
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration
MAILS = 60


def committed(settings: Settings) -> bool:
    try:
        return all_committed(settings)
    except KafkaException:  # a fresh broker: the group's coordinator is not loaded yet
        return False


def test_copies_in_one_batch_are_routed_once(broker: Broker, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2))
    ensure_topics(settings)
    producer, codec, names = make_producer(settings, "test"), default_codec(), TopicNames(settings.kafka.topic_prefix)
    copies: dict[str, int] = {}  # mail id -> its records on mail.out
    for i in range(1, MAILS + 1):
        mail_id, value = scored(i * 10 + 1)  # readable; every 3rd for two domains
        copies[mail_id] = 2 if (i * 10 + 1) % 3 == 0 else 1
        for _ in range(2):  # the copy right behind the original: same key, so same partition
            producer.produce(names("mail.scored"), key=mail_id.encode(), value=value,
                             headers=codec.headers("MailScored", mail_id))
    assert producer.flush(10) == 0
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env = {**outside, "MAILGATE_HOME": str(tmp_path), "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "MAILGATE_KAFKA__PARTITIONS": "2",
           "MAILGATE_LOG_LEVEL": "info", "MAILGATE_VALIDATION__ROUTING_BATCH": "500",
           "MAILGATE_VALIDATION__ROUTING_BATCH_WITHIN_S": "1.0"}
    log = tmp_path / "validation.log"
    proc = start(env, log)
    try:
        wait_for("every offset of mail.scored committed", lambda: committed(settings), 40, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text(errors="replace")
    out = Counter(r.value["mail_id"] for r in read_topic(settings, names.mail_out))
    assert out == Counter(copies), "mail.out: a mail lost, or its copy routed too"
    assert text.count(" event=routed ") == MAILS
    assert text.count("already routed: skipped") == MAILS
    assert "in this batch" in text, "no copy fell into its original's batch"

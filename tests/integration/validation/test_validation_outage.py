"""message-validation (its real process, on the real broker) while clamd is stopped, then after it
is back: a batch waits on one clamd backoff and holds the rest of its mails at once, never one
backoff per mail (virus.ScanBatch); /metrics counts the mails per queue, the check that held
them, and the scan latency once clamd answers."""

from __future__ import annotations

import os
import signal
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from control.broker.topics import ensure_topics
from core.kafka import make_producer
from core.settings import KafkaSettings, Settings
from schemas import default_codec
from schemas.topics import TopicNames
from tests.integration.validation.test_clamd import eicar_forwarded, message
from tests.integration.validation.test_validation_kill_9 import scored_mail, start, wait_for
from tests.support.clamd import Clamd
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration
MAILS = 60
RETRYING = "clamd gave no verdict: retrying"


def feed(settings: Settings, mails: list[bytes]) -> list[str]:
    producer, codec = make_producer(settings, "test"), default_codec()
    topic, ids = TopicNames(settings.kafka.topic_prefix)("mail.scored"), []
    for raw in mails:
        mail_id, value = scored_mail(raw, ["bob@example.com"])
        ids.append(mail_id)
        producer.produce(topic, key=mail_id.encode(), value=value, headers=codec.headers("MailScored", mail_id))
    assert producer.flush(10) == 0
    return ids


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of message-validation's /metrics: (name, labels) → value."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "service"))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples
            if s.labels.get("service") == "message-validation"}


def test_clamd_stopped_costs_a_batch_one_backoff_and_the_metrics_count_it(
        broker: Broker, tmp_path: Path, fresh_clamd: Callable[..., Clamd]) -> None:
    cd = fresh_clamd()
    cd.stop()  # a real clamd, stopped: its socket is gone
    settings = Settings(home=tmp_path, kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=3))
    ensure_topics(settings)
    names, port = TopicNames(settings.kafka.topic_prefix), free_port()
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env = {**outside, "MAILGATE_HOME": str(tmp_path), "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "MAILGATE_KAFKA__PARTITIONS": "3",
           "MAILGATE_LOG_LEVEL": "info", "MAILGATE_CONTROL__METRICS_PORT": str(port),
           "MAILGATE_VALIDATION__VIRUS_SCAN": "true", "MAILGATE_VALIDATION__CLAMD__ADDRESS": cd.unix_address,
           # per mail this would be 2 waits (0.5 s + 1 s) and 3 attempts: 60 mails, 90 s and 120 retries
           "MAILGATE_VALIDATION__CLAMD__ATTEMPTS": "3", "MAILGATE_VALIDATION__CLAMD__RETRY_INITIAL_S": "0.5"}
    held_ids = feed(settings, [message(f"mail {i}\n", f"during the outage {i}").as_bytes() for i in range(MAILS)])
    log = tmp_path / "validation.log"
    proc = start(env, log)
    try:
        def quarantined() -> dict[str, dict]:
            return {r.value["mail_id"]: r.value for r in read_topic(settings, names.mail_quarantine)}

        wait_for(f"{MAILS} mails held", lambda: len(quarantined()) >= MAILS, 60, log)
        held = quarantined()
        assert set(held) == set(held_ids) and read_topic(settings, names.mail_out) == []
        reasons = [h["reasons"][0] for h in held.values()]
        assert all(r.startswith("held: virus scan failed: ClamdUnavailable") for r in reasons), reasons[:3]
        at_once = sum("not tried: clamd gave no answer for an earlier mail of this batch" in r for r in reasons)
        retries = log.read_text(errors="replace").count(RETRYING)
        print(f"{MAILS} held: {at_once} at once, {retries} clamd retries")
        assert at_once >= MAILS // 2 and 0 < retries < MAILS // 2, (at_once, retries)
        samples = metrics(port)
        assert samples[("mailgate_mails_total", (("queue", "mail.quarantine"),))] == MAILS
        assert samples[("mailgate_rejections_total", (("reason", "virus-scan-failed"),))] == MAILS
        assert samples.get(("mailgate_latency_seconds_count", (("step", "virus-scan"),)), 0) == 0  # no verdict yet

        cd.start()  # clamd back: the next mails are scanned
        virus, clean = feed(settings, [eicar_forwarded(), message("clean\n", "after the outage").as_bytes()])
        wait_for("both routed", lambda: {virus, clean} <= {r.value["mail_id"] for r in read_topic(
            settings, names("mail.virus")) + read_topic(settings, names.mail_out)}, 60, log)
        samples = metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert [r.value["mail_id"] for r in read_topic(settings, names("mail.virus"))] == [virus]
    assert [r.value["mail_id"] for r in read_topic(settings, names.mail_out)] == [clean]
    assert samples[("mailgate_mails_total", (("queue", "mail.virus"),))] == 1
    assert samples[("mailgate_mails_total", (("queue", "mail.out"),))] == 1
    assert samples[("mailgate_rejections_total", (("reason", "virus"),))] == 1
    assert samples[("mailgate_latency_seconds_count", (("step", "virus-scan"),))] == 2
    assert samples[("mailgate_latency_seconds_sum", (("step", "virus-scan"),))] > 0

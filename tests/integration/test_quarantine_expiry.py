"""Nothing leaves a quarantine silently (real broker): before a queue's retention removes a
held mail, an EXPIRE QueueAction on its queue says so, once; mail released or deleted
before, and mail with time left, get none."""

from __future__ import annotations

import time
import uuid
from typing import Any

from control.server.auth import Principal
from control.server.expiry import QuarantineSweeper
from control.server.queues import QueueBrowser
from control.broker.retention import QueueRetentionSettings
from control.broker.topics import ensure_topics
from core.kafka import make_producer
from control.settings import Settings
from core.settings import KafkaSettings
from schemas import default_codec, new_mail_id, pack_message
from tests.support.kafka import Broker
from tests.support.topics import read_topic

MINUTE_DAYS = 1 / 1440


def quarantine(settings: Settings, queue: str, rcpts: list[str]) -> str:
    mail_id, now = new_mail_id(), int(time.time() * 1000)
    raw = f"From: x@outside.test\r\nSubject: {queue}\r\n\r\nbody\r\n".encode()
    record: dict[str, Any] = {
        "mail_id": mail_id, "event_time": now, "node": "n", "queue": queue, "reasons": [f"{queue}: test"],
        "destination": None, "mail_from": "x@outside.test", "rcpt_to": rcpts, "received_time": now,
        "client_address": "192.0.2.1", "size": len(raw), "message": pack_message(raw)}
    codec, producer = default_codec(), make_producer(settings, "test")
    producer.produce(f"{settings.kafka.topic_prefix}mail.{queue}", key=mail_id.encode(),
                     value=codec.encode("MailRouted", record), headers=codec.headers("MailRouted", mail_id))
    assert producer.flush(10) == 0
    return mail_id


def test_a_quarantined_mail_gets_an_expire_event_once_before_retention(broker: Broker) -> None:
    # mail.spam keeps a minute; the notice comes 50 s before that, so 10 s after routing.
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, partitions=1,
                                            topic_prefix=f"t{uuid.uuid4().hex[:8]}."),
                        retention=QueueRetentionSettings(spam_days=MINUTE_DAYS, expiry_notice_s=50))
    ensure_topics(settings)
    expiring = quarantine(settings, "spam", ["a@example.com", "b@example.com"])
    deleted = quarantine(settings, "spam", ["c@example.com"])
    kept = quarantine(settings, "virus", ["d@example.com"])  # 30 days left
    browser = QueueBrowser(settings)
    sweeper = QuarantineSweeper(settings, browser)
    try:
        assert sweeper.sweep() == 0  # not due yet
        browser.delete(Principal("admin", "ops"), deleted, "spam")
        time.sleep(11)
        assert sweeper.sweep() == 1
        assert sweeper.sweep() == 0  # once: the queue's readers saw it leave
        browser.view.sync()
        assert [m.mail_id for m in browser.view.mails(["spam", "virus"])] == [kept]
    finally:
        browser.close()
    actions = [r.value for r in read_topic(settings, settings.kafka.topic_prefix + "mail.spam")
               if r.event_type == "QueueAction"]
    expired = [a for a in actions if a["action"] == "EXPIRE"]
    assert len(expired) == 1 and expired[0]["mail_id"] == expiring
    assert expired[0]["recipients"] == ["a@example.com", "b@example.com"]
    assert expired[0]["actor"] == "system:retention" and "mail.spam" in expired[0]["reason"]
    assert not [a for a in actions if a["mail_id"] == deleted and a["action"] == "EXPIRE"]

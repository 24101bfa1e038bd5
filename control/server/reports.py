"""control/server — spam and ham reports: an administrator or a user says what a mail is. Each report
is a SpamReport event on spam.reports; the spam filter learns from it on every node."""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr

from core.kafka import KafkaUnavailable, make_producer
from core.publish import Encoder, Envelope, produce_and_wait, produce_many
from control.settings import Settings
from core.tables import load_table
from schemas import new_mail_id, pack_message
from schemas.topics import SPAM_PATTERNS, SPAM_REPORTS, TopicNames

LABELS = ("spam", "ham")


def report_record(raw: bytes, label: str, reporter: str, role: str = "admin",
                  mail_id: str | None = None) -> dict[str, object]:
    if label not in LABELS:
        raise ValueError(f"label {label!r}: say spam or ham")
    headers = BytesHeaderParser().parsebytes(raw)
    return {
        "mail_id": mail_id or new_mail_id(), "event_time": int(time.time() * 1000), "label": label,
        "reporter": reporter, "role": role, "mail_from": parseaddr(headers.get("From", ""))[1],
        "rcpt_to": [a for _, a in getaddresses(headers.get_all("To", [])) if a],
        "message": pack_message(raw),
    }


def publish_report(settings: Settings, raw: bytes, label: str, reporter: str, role: str = "admin",
                   mail_id: str | None = None) -> str:
    """Publishes one report; returns its mail id once the broker acknowledged it."""
    record = report_record(raw, label, reporter, role, mail_id)
    producer = make_producer(settings, "reports")
    envelope = Encoder().envelope(record, event_type="SpamReport")
    try:
        produce_and_wait(producer, TopicNames(settings.kafka.topic_prefix)(SPAM_REPORTS), envelope,
                         settings.kafka.produce_timeout_s + 5)
    except KafkaUnavailable as exc:
        raise ConnectionError(f"report not acknowledged by Kafka at {settings.bootstrap_servers}: {exc}") from exc
    return str(record["mail_id"])


def reset_spam_filter(settings: Settings) -> int:
    """Tombstones every pattern on spam.patterns: every node unlearns what reports taught it and
    scores with the base model alone (``spam.base_model``), exactly as after a fresh install.
    Returns how many patterns were removed, once the broker acknowledged every tombstone."""
    topic = TopicNames(settings.kafka.topic_prefix)(SPAM_PATTERNS)
    live = load_table(settings, topic, timeout=settings.kafka.produce_timeout_s + 5)
    producer = make_producer(settings, "spam-reset")
    try:
        produce_many(producer, topic, (Envelope(key, None, []) for key in live), settings.kafka.produce_timeout_s + 5)
    except KafkaUnavailable as exc:
        raise ConnectionError(f"tombstones not acknowledged by Kafka at {settings.bootstrap_servers}: {exc}") from exc
    return len(live)

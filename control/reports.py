"""Spam and ham reports: an administrator or a user says what a mail is. Each report
is a SpamReport event on spam.reports; the spam filter learns from it on every node."""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr

from core.kafka import KafkaUnavailable, make_producer
from core.publish import Encoder, produce_and_wait
from core.settings import Settings
from schemas import new_mail_id, pack_message
from schemas.topics import SPAM_REPORTS, TopicNames

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

"""spam-filter as its own process on the real broker (`mailgate service spam-filter`): a report
learnt in one run is in the pattern table after a restart before the first mail is scored
(issue 6), and /metrics counts the reports applied and the mails scored, by verdict."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from control.broker.topics import ensure_topics
from control.server.reports import publish_report
from core.kafka import make_producer
from core.settings import KafkaSettings, Settings
from schemas import default_codec, new_mail_id, pack_message
from schemas.topics import TopicNames
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.topics import read_topic
from tests.unit.spam.spam_helpers import mutate, plain_spams

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


class SpamFilterProcess:
    """One run of `mailgate service spam-filter`, with /metrics on a port of its own."""

    def __init__(self, broker: Broker, settings: Settings, log: Path, **extra: str) -> None:
        self.metrics_port = free_port()
        outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        env = {**outside, "MAILGATE_HOME": str(settings.home),
               "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "MAILGATE_KAFKA__PARTITIONS": "2",
               "MAILGATE_LOG_LEVEL": "info", "MAILGATE_CONTROL__METRICS_PORT": str(self.metrics_port), **extra}
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "control.cli", "service", "spam-filter"], env=env,
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def counted(self, sample: str) -> float | None:
        """The sample's value once it is above 0."""
        return value if (value := self.metric(sample)) else None

    def metric(self, sample: str) -> float | None:
        """The value of one sample line on /metrics (None: not there, or not serving yet)."""
        try:
            page = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        except OSError:
            return None
        found = re.search(rf"^{re.escape(sample)} (\S+)$", page, re.M)
        return float(found.group(1)) if found else None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for(what: str, probe: Any, log: Path, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{log.read_text(errors='replace')[-5000:]}")


def received(raw: bytes) -> tuple[str, bytes]:
    """A MailReceived as smtp-server writes it."""
    codec, mail_id = default_codec(), new_mail_id()
    mail: dict[str, Any] = {"mail_id": mail_id, "event_time": int(time.time() * 1000), "node": "n", "origin": "SMTP",
                            "mail_from": "news@outside.test", "rcpt_to": ["bob@example.com"], "size": len(raw),
                            "message": pack_message(raw)}
    for field in codec.schema("MailReceived").fields:
        mail.setdefault(field.name, field.default if field.has_default else None)
    return mail_id, codec.encode("MailReceived", mail)


def first(settings: Settings, topic: str, predicate: Any) -> dict | None:
    return next((r.value for r in read_topic(settings, topic) if predicate(r.value)), None)


def test_restarted_spam_filter_scores_its_first_mail_with_the_learnt_patterns(broker: Broker, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2))
    ensure_topics(settings)
    names, codec = TopicNames(settings.kafka.topic_prefix), default_codec()
    (spam,) = plain_spams(1)
    log = tmp_path / "spam-filter.log"

    learning = SpamFilterProcess(broker, settings, log)
    try:
        publish_report(settings, spam, "spam", "admin@example.com")
        pattern = wait_for("a spam pattern on spam.patterns",
                           lambda: first(settings, names("spam.patterns"), lambda r: r["label"] == "spam"), log)
        applied = wait_for("the report counted on /metrics",
                           lambda: learning.counted('mailgate_spam_reports_applied_total{label="spam"}'), log)
        assert applied == 1.0
        assert learning.metric('mailgate_spam_scored_total{verdict="spam"}') == 0.0
        assert learning.metric('mailgate_spam_reports_applied_total{label="ham"}') == 0.0
    finally:
        learning.stop()

    # The near-duplicate waits on mail.in before the filter is back: it is the first mail scored.
    mail_id, value = received(mutate(spam, "Mary Smith", "b1"))
    producer = make_producer(settings, "test")
    producer.produce(names("mail.in"), key=mail_id.encode(), value=value,
                     headers=codec.headers("MailReceived", mail_id))
    assert producer.flush(10) == 0

    restarted = SpamFilterProcess(broker, settings, log)
    try:
        scored = wait_for("the mail on mail.scored",
                          lambda: first(settings, names("mail.scored"), lambda r: r["mail_id"] == mail_id), log)
        assert scored["verdict"] == "spam", scored["reasons"]
        assert pattern["pattern_id"] in scored["matched"]
        counted = wait_for("the verdict counted on /metrics",
                           lambda: restarted.counted('mailgate_spam_scored_total{verdict="spam"}'), log)
        assert counted == 1.0
        assert restarted.metric("mailgate_spam_score_count") == 1.0
        assert restarted.metric('mailgate_spam_score_bucket{le="0.5"}') == 0.0  # scored high, not in a low bucket
    finally:
        restarted.stop()
    text = log.read_text(errors="replace")
    assert "pattern table loaded" in text

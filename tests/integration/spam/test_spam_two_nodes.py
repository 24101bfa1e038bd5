"""Online learning on every node (issue 6): two `mailgate service spam-filter` processes (nodes a and
b) share mail.in's two partitions on the real broker. A report, learnt by whichever node consumes
it, changes the verdict on the next near-duplicate within seconds on both nodes, through the
compacted spam.patterns topic; so does the "not spam" report that follows."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from control.broker.topics import ensure_topics
from control.server.reports import publish_report
from core.kafka import make_producer
from core.settings import KafkaSettings, Settings
from schemas import default_codec
from schemas.topics import TopicNames
from tests.integration.spam.test_spam_filter_restart import SpamFilterProcess, received
from tests.support.kafka import Broker
from tests.support.topics import read_topic
from tests.unit.spam.spam_helpers import mutate, plain_spams

pytestmark = pytest.mark.integration

WITHIN_S = 15.0  # "within seconds": the report's trip through spam.reports and spam.patterns to both nodes


class Feed:
    """Near-duplicates of one spam onto a chosen partition of mail.in, and their verdicts."""

    def __init__(self, settings: Settings, spam: bytes) -> None:
        self.settings, self.spam = settings, spam
        self.names, self.codec = TopicNames(settings.kafka.topic_prefix), default_codec()
        self.producer = make_producer(settings, "test-feed")
        self.sent: dict[str, tuple[int, float]] = {}  # mail id → (partition, when sent)
        self.n = 0

    def send(self, partition: int) -> str:
        self.n += 1
        mail_id, value = received(mutate(self.spam, f"Reader {self.n}", f"s{self.n}"))
        self.producer.produce(self.names("mail.in"), key=mail_id.encode(), value=value, partition=partition,
                              headers=self.codec.headers("MailReceived", mail_id))
        assert self.producer.flush(10) == 0
        self.sent[mail_id] = (partition, time.monotonic())
        return mail_id

    def verdicts(self) -> dict[str, tuple[str, str]]:
        """mail id → (node, verdict) of every mail of this feed scored so far."""
        return {r.value["mail_id"]: (r.value["node"], r.value["verdict"])
                for r in read_topic(self.settings, self.names("mail.scored")) if r.value["mail_id"] in self.sent}

    def until_both_nodes(self, verdict_ok, what: str, since: float, log: Path) -> dict[str, float]:
        """Sends one near-duplicate to each partition every half second until a mail sent after ``since``
        got an acceptable verdict on each node; returns node → seconds from ``since`` to that mail's send."""
        deadline = since + WITHIN_S + 30  # the assertion on the time is the caller's; this only bounds the loop
        first_ok: dict[str, float] = {}
        while time.monotonic() < deadline and len(first_ok) < 2:
            for partition in (0, 1):
                self.send(partition)
            time.sleep(0.5)
            for mail_id, (node, verdict) in self.verdicts().items():
                sent_at = self.sent[mail_id][1]
                if sent_at >= since and verdict_ok(verdict) and node not in first_ok:
                    first_ok[node] = sent_at - since
        assert sorted(first_ok) == ["a", "b"], \
            f"{what}: only on {sorted(first_ok)}\n{log.read_text(errors='replace')[-4000:]}"
        return first_ok


def test_a_report_changes_the_verdict_on_both_nodes_within_seconds(broker: Broker, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2))
    ensure_topics(settings)
    (spam,) = plain_spams(1)
    log = tmp_path / "spam-filters.log"
    nodes = [SpamFilterProcess(broker, settings, log, MAILGATE_NODE=name, MAILGATE_SPAM__BASE_MODEL="none") for name in ("a", "b")]
    feed = Feed(settings, spam)
    try:
        # Nothing learnt: both nodes score near-duplicates, and neither calls them spam.
        unlearnt = feed.until_both_nodes(lambda v: v != "spam", "scored before any report", time.monotonic(), log)
        assert unlearnt  # each node owns one partition of mail.in now
        assert all(v != "spam" for _, v in feed.verdicts().values())

        reported = time.monotonic()
        publish_report(settings, spam, "spam", "admin@example.com")
        spam_after = feed.until_both_nodes(lambda v: v == "spam", "spam after the report", reported, log)
        assert max(spam_after.values()) <= WITHIN_S, spam_after

        cleared = time.monotonic()
        publish_report(settings, spam, "ham", "admin@example.com")
        ham_after = feed.until_both_nodes(lambda v: v != "spam", "not spam after the ham report", cleared, log)
        assert max(ham_after.values()) <= WITHIN_S, ham_after
        # and it stays so: two more near-duplicates, one per partition, are ham on both nodes
        last = [feed.send(p) for p in (0, 1)]
        deadline = time.monotonic() + 30
        while not set(last) <= set(verdicts := feed.verdicts()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert {verdicts[m][0] for m in last} == {"a", "b"} and all(verdicts[m][1] != "spam" for m in last), \
            [verdicts.get(m) for m in last]
        print(f"spam on both nodes {spam_after}, not spam again {ham_after} (s from the report to the first "
              "near-duplicate sent that got the new verdict)")
    finally:
        for node in nodes:
            node.stop()

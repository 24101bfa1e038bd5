"""Greylisting with its triplet state in the compacted topic smtp.greylist: a new
triplet gets 451 on one node; the retry after the delay passes on *another* node,
because every node reads the same topic."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiosmtplib
from confluent_kafka import TopicPartition

from control.broker.topics import ensure_topics
from core.kafka import make_consumer, make_producer
from core.settings import KafkaSettings, Settings
from ingress.smtp.filters.greylist import Triplet, triplet_key
from schemas.topics import SMTP_GREYLIST, TopicNames

from tests.integration.smtp.conftest import StartServer
from tests.integration.smtp.test_filters import MSG, rcpt_reply
from tests.support.kafka import Broker


async def test_greylisting_is_shared_by_the_nodes(smtp_server: StartServer) -> None:
    grey = {"enabled": True, "delay_s": 1.0, "retry_window_s": 60}
    node_a = smtp_server(greylist=grey, node="node-a")
    node_b = smtp_server(greylist=grey, node="node-b", prefix=node_a.prefix)

    code, text = rcpt_reply(node_a.port, "u@example.com", sender="new@outside.test")
    assert code == 451 and text.startswith("4.7.1 Greylisted") and "try again in 1 s" in text
    await asyncio.sleep(0.3)
    assert rcpt_reply(node_b.port, "u@example.com", sender="new@outside.test")[0] == 451  # too early, on B too
    assert rcpt_reply(node_b.port, "other@example.com", sender="new@outside.test")[0] == 451  # its own triplet
    await asyncio.sleep(1.0)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=node_b.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    await client.sendmail("new@outside.test", ["u@example.com"], MSG)  # B knows A's first attempt
    await client.quit()
    assert rcpt_reply(node_a.port, "u@example.com", sender="new@outside.test")[0] == 250  # known now, on A too

    (mail,) = node_b.mail_in()
    assert mail.value["verdicts"][0]["filter"] == "greylist" and mail.value["verdicts"][0]["reason"].startswith(
        "passed after")
    node_c = smtp_server(greylist=grey, node="node-c", prefix=node_a.prefix)  # started later: reads the topic
    assert rcpt_reply(node_c.port, "u@example.com", sender="new@outside.test")[0] == 250
    assert rcpt_reply(node_c.port, "u@example.com", sender="newer@outside.test")[0] == 451


def test_allow_listed_and_trusted_clients_are_not_greylisted(smtp_server: StartServer) -> None:
    grey = {"enabled": True, "delay_s": 300}
    srv = smtp_server(greylist=grey, lists={"sender_allow": ["friend.test"]})
    assert rcpt_reply(srv.port, "u@example.com", sender="a@friend.test")[0] == 250
    assert rcpt_reply(srv.port, "u@example.com", sender="a@stranger.test")[0] == 451
    trusted = smtp_server(greylist=grey, relay={"trusted_networks": ["127.0.0.1/32"]})
    assert rcpt_reply(trusted.port, "u@example.com", sender="a@stranger.test")[0] == 250


DAY_MS = 86_400_000


def _greylist_records(settings: Settings, topic: str) -> dict[str, list[bytes | None]]:
    """Every record of the (JSON, not Avro) greylist topic by key, oldest first; None: a tombstone."""
    consumer = make_consumer(settings, group=f"{topic}.test-reader", client_id="test-reader")
    out: dict[str, list[bytes | None]] = {}
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in meta.partitions}
        pending = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in meta.partitions])
        while pending:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic} not read to its end"
            if msg.error() is not None:
                continue
            out.setdefault((msg.key() or b"").decode(), []).append(msg.value())
            if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0][1]:
                pending.discard(msg.partition() or 0)
    finally:
        consumer.close()
    return out


def test_expired_triplets_are_greylisted_again_and_tombstoned(smtp_server: StartServer, broker: Broker) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix,
                                            partitions=2))
    ensure_topics(settings)
    topic = TopicNames(prefix)(SMTP_GREYLIST)
    now = int(time.time() * 1000)
    old, fresh = Triplet(now - 41 * DAY_MS, now - 41 * DAY_MS, now - 40 * DAY_MS), Triplet(0, 1, now - DAY_MS)
    triplets = {"returns": (triplet_key("127.0.0.1", "back@outside.test", "u@example.com"), old),
                "gone": (triplet_key("127.0.0.1", "gone@outside.test", "u@example.com"), old),
                "fresh": (triplet_key("127.0.0.1", "fresh@outside.test", "u@example.com"), fresh)}
    producer = make_producer(settings, "test-greylist")
    for key, entry in triplets.values():
        producer.produce(topic, key=key.encode(), value=entry.to_bytes())
    assert producer.flush(10) == 0

    # B loaded the old triplets first and, with its longer max_age, would take them as known.
    lenient = smtp_server(prefix=prefix, node="node-b",
                          greylist={"enabled": True, "delay_s": 300, "max_age_s": 100 * 86400.0})
    sweeper = smtp_server(prefix=prefix, node="node-a",
                          greylist={"enabled": True, "delay_s": 300, "sweep_interval_s": 0.3})  # 35 days
    code, text = rcpt_reply(sweeper.port, "u@example.com", sender="back@outside.test")
    assert code == 451 and text.startswith("4.7.1 Greylisted"), text  # 40 days unseen: new again
    assert rcpt_reply(sweeper.port, "u@example.com", sender="fresh@outside.test")[0] == 250

    gone_key = triplets["gone"][0]
    deadline = time.monotonic() + 15
    while (records := _greylist_records(settings, topic)).get(gone_key, [b""])[-1] is not None:
        assert time.monotonic() < deadline, f"no tombstone for {gone_key}: {records.get(gone_key)}"
        time.sleep(0.3)
    assert records[triplets["fresh"][0]][-1] is not None  # a triplet in use is kept
    returned = records[triplets["returns"][0]][-1]  # greylisted afresh (or tombstoned, then new)
    assert returned is not None and Triplet.from_bytes(returned).passed_ms is None

    time.sleep(1.0)  # B's reader polls every 0.2 s
    # B dropped the triplet when it read the tombstone: it greylists that sender again too.
    code, text = rcpt_reply(lenient.port, "u@example.com", sender="gone@outside.test")
    assert code == 451 and text.startswith("4.7.1 Greylisted"), text

"""Benchmark (not a test): how many duplicates does `kill -9` of smtp-client under load leave?

    python bench/delivery_kill.py [--rounds 5] [--messages 2000] [--bootstrap HOST:PORT]

Each round: MESSAGES mails on mail.out, `mailgate service smtp-client` delivering
them to an aiosmtpd sink at full speed, `kill -9` at a random moment, a new
client, and a count of what the sink got twice. A duplicate is a mail the sink
answered 250 for twice: its first 250 was read by the killed client (or still
in its socket buffer) before the delivery log record left the process. Mails the
sink took after the client was gone are counted apart ("orphans"). Prints the
figures of each round and the load average (the 2 cores are shared).

Each duplicate is also placed in time: how long before the kill the sink gave
its first 250, and whether the delivery log record for it had reached the broker
before the kill (the log topic of the run uses broker append times). A duplicate
whose record was on the broker would be a bug. A duplicate whose 250 the sink gave
after the kill signal was sent never reached a live client: no client can record it
(RFC 1047); those are counted apart from the ones whose 250 came before the kill.
Marks the killed client had only in its local journal (not yet on the broker) and
that the next run wrote from there are counted as "recovered".
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from bench.scratch import start_scratch_broker
from control.broker.topics import ensure_topics
from core.kafka import make_admin, make_consumer
from core.settings import Settings
from schemas import default_codec
from schemas.topics import DELIVERY_LOG, TopicNames
from tests.integration.smtp_client.conftest import Harness, message
from tests.integration.smtp_client.peers import ScriptedSink
from tests.integration.smtp_client.test_kill_9 import service_env, start
from tests.support.kafka import Broker

RECOVERED = "delivery log mark recovered from the journal"  # the restarted client's warning, one per mark


def broker_append_times(settings: Settings, topic: str) -> dict[str, float]:
    """Recipient → when the broker appended the first delivery log record marking it done."""
    codec = default_codec()
    consumer = make_consumer(settings, f"{topic}.bench", "bench", **{"enable.partition.eof": True})
    parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    appended: dict[str, float] = {}
    at_end: set[int] = set()
    while len(at_end) < len(parts) and (msg := consumer.poll(10)) is not None:
        if msg.error() is not None:
            at_end.add(msg.partition() or 0)
        elif (value := msg.value()) is not None:
            for rcpt in codec.decode(value).record["done"]:
                appended[rcpt] = min(appended.get(rcpt, float("inf")), msg.timestamp()[1] / 1000)
    consumer.close()
    return appended


def append_times_by_broker(settings: Settings, topic: str) -> None:
    admin = make_admin(settings)
    change = ConfigResource("topic", topic, incremental_configs=[ConfigEntry(
        "message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET)])
    for done in admin.incremental_alter_configs([change]).values():
        done.result(10)


def one_round(bootstrap: str, n: int, workdir: Path) -> tuple[int, int, int, int, str, int, int]:
    from tests.integration.smtp_client.conftest import settings_for

    settings = settings_for(Broker("external", bootstrap))
    ensure_topics(settings)
    log_topic = TopicNames(settings.kafka.topic_prefix)(DELIVERY_LOG)
    append_times_by_broker(settings, log_topic)
    h = Harness(settings)
    with ScriptedSink() as sink:
        h.feed(*(h.routed(message(f"kill {i}"), [f"k{i}@dest.test"]) for i in range(n)))
        env = service_env(settings, sink.address)
        proc = start(env, workdir / "client.log")
        try:
            sink.wait_for(random.randint(n // 10, n // 2), timeout=300)
            killed = time.time()  # taken before the signal: a 250 given after it never reached a live client
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            at_kill = len(sink.mails)
            replayed = (workdir / "client.log").read_text(errors="replace").count(RECOVERED)
            proc = start(env, workdir / "client.log")
            sink.wait_for(n, timeout=600)
            time.sleep(2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    recovered = (workdir / "client.log").read_text(errors="replace").count(RECOVERED) - replayed
    counts = Counter(m.rcpt_to[0] for m in sink.mails)
    lost = n - len(set(counts) | {m.rcpt_to[0] for m in sink.handler.orphans})
    dups = sorted(r for r, c in counts.items() if c > 1)
    appended = broker_append_times(settings, log_topic)
    first_250 = {r: min(m.at for m in sink.mails if m.rcpt_to[0] == r) for r in dups}
    logged = sum(appended.get(r, float("inf")) < killed for r in dups)
    before = sorted(1000 * (killed - t) for t in first_250.values())
    late = sum(b < 0 for b in before)
    where = (f"first 250s at {-before[-1]:+.1f} to {-before[0]:+.1f} ms from the kill (+ after it); "
             f"{late} given after the kill (the client was dead: no client can record those), "
             f"{len(before) - late} before it; {logged} logged on the broker before the kill" if dups else "")
    return at_kill, sum(c - 1 for c in counts.values()), len(sink.handler.orphans), lost, where, recovered, \
        len(before) - late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: a local broker of its own)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-kill-bench-"))
    broker = None
    if not args.bootstrap:
        broker = start_scratch_broker(workdir, heap="1g")
    bootstrap = args.bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
    total_dups = total_early = 0
    try:
        for r in range(args.rounds):
            at_kill, dups, orphans, lost, where, recovered, early = one_round(bootstrap, args.messages, workdir)
            total_dups += dups
            total_early += early
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"round {r + 1}: kill -9 after {at_kill} of {args.messages}: {dups} duplicates, "
                  f"{orphans} orphans, {lost} lost, {recovered} recovered from the journal; load average {load}" + (f"\n  duplicates: {where}" if where else ""))
        print(f"duplicates after kill -9: {total_dups} in {args.rounds} kills "
              f"({total_dups / args.rounds:.1f} per kill); of them, {total_early} with their 250 given before "
              "the kill (a reply that could have reached the client)")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()

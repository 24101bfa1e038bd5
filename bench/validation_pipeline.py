"""Benchmark (not a test): mails/s of message-validation on Kafka, each mail id routed once
(streams/validation/once.py) against the same stage routing at-least-once only.

    python bench/validation_pipeline.py [--mails 5000] [--partitions 6] [--trickle 200] [--bootstrap HOST:PORT]

In one run, on a scratch local broker of its own (or --bootstrap):
1. Two fresh topic prefixes (``mailgate topics create``), each fed the same kind of
   MAILS MailScored records on mail.scored, as spam-filter writes them (the records of
   tests/integration/validation/test_validation_kill_9.py: every 3rd mail for two domains, so two
   mail.out records; every 10th unreadable, so one mail.quarantine record). Both are
   fed before either stage starts.
2. For each prefix, ``mailgate service message-validation`` runs as its real process
   (virus scan off): once with ``validation.routing_once = true`` (the guarantee), once
   with ``false`` (the peer: plain writes, no transaction, no mark, no idempotence).
   A reader (read_committed) follows mail.out and mail.quarantine and notes when each
   mail id first becomes visible. The rate is MAILS over the time from the first
   routed mail to the last (the stage's start-up is printed apart).
3. Then TRICKLE more mails, one every 20 ms, and the latency of each (visible on its
   queue minus its event_time, set when it was written on mail.scored): p50/p99. With
   the backlog the stage always has a full batch; the trickle shows the ``within`` wait.
Prints both rates, their ratio and the load average (the 2 cores are shared).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import TopicPartition  # noqa: E402

from bench.scratch import start_scratch_broker  # noqa: E402
from control.broker.topics import ensure_topics  # noqa: E402
from core.kafka import make_consumer, make_producer  # noqa: E402
from core.settings import KafkaSettings, Settings  # noqa: E402
from schemas import default_codec  # noqa: E402
from schemas.topics import TopicNames  # noqa: E402
from tests.integration.validation.test_validation_kill_9 import scored, start  # noqa: E402

TRICKLE_GAP_S = 0.02


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Watcher(threading.Thread):
    """Follows mail.out and mail.quarantine (read_committed); when each mail id first showed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        names = TopicNames(settings.kafka.topic_prefix)
        self.settings, self.topics = settings, [names.mail_out, names.mail_quarantine]
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        consumer, codec = make_consumer(self.settings, f"bench-{uuid.uuid4().hex[:6]}", "bench-watcher"), \
            default_codec()
        parts = [TopicPartition(t, p, 0) for t in self.topics
                 for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        consumer.assign(parts)
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.1)  # returns at the first record (consume(n) would wait for n)
                if msg is not None and msg.error() is None:
                    mail_id = codec.decode(msg.value(), expect="MailRouted").record["mail_id"]
                    self.seen.setdefault(mail_id, time.time())
        finally:
            consumer.close()

    def wait_for(self, ids: set[str], timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.seen.keys():
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{len(ids - self.seen.keys())} mails not routed within {timeout:.0f} s\n{tail}")
            time.sleep(0.05)


@dataclass
class Run:
    label: str
    mails: int
    startup_s: float = 0.0
    span_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return (self.mails - 1) / self.span_s if self.span_s > 0 else float("nan")

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        pct = (lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))]:7.1f}") if lat else (lambda q: "      -")
        return (f"{self.label:<34} {self.rate:8.1f} mails/s ({self.mails} in {self.span_s:.2f} s; start-up "
                f"{self.startup_s:.1f} s)   trickle latency p50 {pct(0.5)} ms  p99 {pct(0.99)} ms")


def prepare(bootstrap: str, partitions: int, workdir: Path, label: str) -> Settings:
    settings = Settings(home=workdir / label, kafka=KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}.", partitions=partitions))
    ensure_topics(settings)
    return settings


def feed(settings: Settings, count: int, first: int, gap_s: float = 0.0) -> dict[str, tuple[int, float]]:
    """COUNT MailScored records (test_kill_9's mix); with a gap, one at a time as they come.
    Returns each mail id's index and when it was written (its event_time, in s)."""
    producer, codec = make_producer(settings, "bench-feed"), default_codec()
    topic, ids = TopicNames(settings.kafka.topic_prefix)("mail.scored"), {}
    for i in range(first, first + count):
        mail_id, value = scored(i)
        ids[mail_id] = (i, time.time())
        producer.produce(topic, key=mail_id.encode(), value=value, headers=codec.headers("MailScored", mail_id))
        if gap_s:
            producer.flush(10)
            time.sleep(gap_s)
        else:
            producer.poll(0)
    assert producer.flush(30) == 0
    return ids


def service_env(settings: Settings, once: bool, log_level: str) -> dict[str, str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return {**outside, "MAILGATE_HOME": str(settings.home),
            "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
            "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "MAILGATE_KAFKA__PARTITIONS": str(settings.kafka.partitions), "MAILGATE_LOG_LEVEL": log_level,
            "MAILGATE_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}',
            "MAILGATE_VALIDATION__VIRUS_SCAN": "false", "MAILGATE_VALIDATION__ROUTING_ONCE": str(once).lower()}


def measure(run: Run, settings: Settings, ids: dict[str, tuple[int, float]], once: bool,
            args: argparse.Namespace) -> Run:
    log = settings.home / "validation.log"
    settings.home.mkdir(parents=True, exist_ok=True)
    watcher = Watcher(settings)
    watcher.start()
    started = time.time()
    proc = start(service_env(settings, once, args.log_level), log)
    try:
        watcher.wait_for(set(ids), 900, log)
        times = sorted(watcher.seen[m] for m in ids)
        run.startup_s, run.span_s = times[0] - started, times[-1] - times[0]
        trickle = feed(settings, args.trickle, len(ids), TRICKLE_GAP_S)
        watcher.wait_for(set(trickle), 120, log)
        run.latencies_ms = [(watcher.seen[m] - sent) * 1000 for m, (_, sent) in trickle.items()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        watcher.stop.set()
        watcher.join(10)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=5000)
    ap.add_argument("--partitions", type=int, default=6, help="of mail.scored (kafka.partitions' default: 6)")
    ap.add_argument("--trickle", type=int, default=200, help="mails fed one every 20 ms after the backlog")
    ap.add_argument("--log-level", default="info", help="of the stage (info: one line per routed mail)")
    ap.add_argument("--bootstrap", help="an existing Kafka (default: a local broker of its own)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-validation-bench-"))
    broker = None if args.bootstrap else start_scratch_broker(workdir, heap="1g")
    bootstrap = args.bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
    try:
        modes = [("exactly-once routing (once.py)", True), ("peer: at-least-once, no txn", False)]
        prepared = [(label, once, prepare(bootstrap, args.partitions, workdir, f"run{n}"))
                    for n, (label, once) in enumerate(modes)]
        fed = [feed(settings, args.mails, 0) for _, _, settings in prepared]
        print(f"{args.mails} MailScored records fed per run, {args.partitions} partitions; {load()}", flush=True)
        runs = []
        for (label, once, settings), ids in zip(prepared, fed):
            runs.append(measure(Run(label, len(ids)), settings, ids, once, args))
            print(runs[-1].line(), f"; {load()}", flush=True)
        ours, peer = runs
        print(f"\nratio mails/s  exactly-once : at-least-once = {ours.rate / peer.rate:.3f}  ({load()})")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()

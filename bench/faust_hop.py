"""Benchmark (not a test): what the Faust transport costs one stream stage, per mail.

    python bench/faust_hop.py [--mails 5000] [--size 4096] [--partitions 6]

One scratch broker; MAILS MailReceived records (SIZE bytes of body each) on two
mail.in topics. Each peer runs as its own process and does what spam-filter's
``score`` agent does minus the scoring: read a record, decode it to the typed
event (``streams.spam.agents.read_mail``), publish a MailScored with the mail
inside through ``core.publish`` (acks=all), commit. Peers:

- faust: a Faust worker built by ``streams.app.build_app`` (aiokafka underneath),
  the agent on ``stream.events()`` and ``streams.publish.faust_publisher``;
- confluent: a confluent-kafka consumer and ``AsyncProducer`` (``core.kafka``), the
  same calls, batches of 500 awaited together, offsets committed after each batch.

Prints each peer's rate (first to last output record) and its process's CPU
milliseconds per mail (user + system, from /proc/<pid>/stat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from bench.scratch import start_scratch_broker  # noqa: E402
from control.topics import ensure_topics  # noqa: E402
from core.kafka import make_consumer, make_producer  # noqa: E402
from core.publish import Encoder, produce_many  # noqa: E402
from core.tables import _ends  # noqa: E402
from core.settings import KafkaSettings, Settings  # noqa: E402
from schemas import new_mail_id, packed  # noqa: E402
from schemas.events import MailReceived  # noqa: E402
from schemas.topics import MAIL_SCORED, TopicNames  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def settings_for(bootstrap: str, home: Path, partitions: int) -> Settings:
    return Settings(home=home, kafka=KafkaSettings(bootstrap_servers=bootstrap, partitions=partitions,
                                                   topic_prefix=f"h{uuid.uuid4().hex[:6]}."))


def feed(settings: Settings, mails: int, size: int) -> None:
    producer, encoder = make_producer(settings, "bench-feed"), Encoder()
    topic = TopicNames(settings.kafka.topic_prefix).mail_in
    body = b"Subject: hop\r\n\r\n" + os.urandom(size // 2).hex().encode()[:size]
    events = (MailReceived(mail_id=new_mail_id(), event_time=int(time.time() * 1000), node="bench", origin="SMTP",
                           mail_from="s@outside.test", rcpt_to=["a@example.com"], size=len(body),
                           message=packed(body)) for _ in range(mails))
    produce_many(producer, topic, (encoder.envelope(e) for e in events))


def out_count(consumer: Consumer, topic: str) -> int:
    return sum(_ends(consumer, topic, 10).values())


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICK


def run_peer(kind: str, settings: Settings, mails: int) -> tuple[float, float]:
    """Starts the peer process; returns (mails/s first to last output, CPU ms per mail)."""
    env = {**os.environ, "MAILGATE_HOME": str(settings.home), "MAILGATE_LOG_LEVEL": "warning",
           "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
           "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "MAILGATE_KAFKA__PARTITIONS": str(settings.kafka.partitions)}
    proc = subprocess.Popen([sys.executable, __file__, "--peer", kind], env=env, cwd=ROOT)
    first = last = 0.0
    watch, out = make_consumer(settings, "bench-watch", "bench-watch"), TopicNames(settings.kafka.topic_prefix)(MAIL_SCORED)
    try:
        deadline = time.monotonic() + 600
        while (n := out_count(watch, out)) < mails:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: {n} of {mails} out; exit {proc.returncode}")
            if n and not first:
                first = time.monotonic()
            time.sleep(0.05)
        last, used = time.monotonic(), cpu_ms(proc.pid)
    finally:
        watch.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return (mails - 1) / (last - first), used / mails


def faust_peer(settings: Settings) -> None:
    import faust

    from schemas import default_codec
    from streams.app import build_app, run_worker
    from streams.publish import faust_publisher
    from streams.spam.agents import read_mail, scored_event
    from streams.spam.scoring import Score
    from streams.topics import StreamTopics

    app = build_app(settings, "bench-hop")
    topics, codec = StreamTopics(app, settings.kafka.topic_prefix), default_codec()
    publisher, score = faust_publisher(codec), Score(0.0, "ham", [], [])

    @app.agent(topics.mail_in, name="hop")
    async def hop(stream: faust.StreamT) -> None:
        async for event in stream.events():
            mail, _raw = read_mail(codec, event.value)
            await publisher.publish(topics.mail_scored, scored_event(mail, score, "bench"))

    run_worker(app, settings)


async def confluent_peer(settings: Settings) -> None:
    from core.kafka import AsyncProducer
    from core.publish import Publisher
    from schemas import default_codec
    from streams.spam.agents import read_mail, scored_event
    from streams.spam.scoring import Score

    names, codec = TopicNames(settings.kafka.topic_prefix), default_codec()
    consumer = make_consumer(settings, names.group("bench-hop"), "bench-hop", **{"session.timeout.ms": 6000})
    producer = AsyncProducer(settings, "bench-hop")
    publisher, score = Publisher.on(producer, codec, asyncio.get_running_loop()), Score(0.0, "ham", [], [])
    consumer.subscribe([names.mail_in])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        msgs = await asyncio.to_thread(consumer.consume, 500, 0.2)
        records = [m for m in msgs if m.error() is None]
        await asyncio.gather(*(publisher.publish(names(MAIL_SCORED), scored_event(read_mail(codec, m.value())[0],
                                                                                 score, "bench"))
                               for m in records))
        ends = {(m.topic(), m.partition()): m.offset() + 1 for m in records}
        if ends:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()], asynchronous=False)
    consumer.close()
    producer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--peer", choices=("faust", "confluent"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        settings = Settings()
        if args.peer == "faust":
            faust_peer(settings)
        else:
            asyncio.run(confluent_peer(settings))
        return
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-faust-hop-"))
    broker = start_scratch_broker(workdir, heap="1g")
    try:
        results = {}
        for kind in ("faust", "confluent"):
            settings = settings_for(broker.bootstrap_servers, workdir / kind, args.partitions)
            ensure_topics(settings)
            feed(settings, args.mails, args.size)
            results[kind] = run_peer(kind, settings, args.mails)
            rate, cpu = results[kind]
            print(f"{kind:<10} {rate:8.1f} mails/s   {cpu:6.3f} ms CPU per mail (its process)  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
        (f_rate, f_cpu), (c_rate, c_cpu) = results["faust"], results["confluent"]
        print(f"\nfaust : confluent  rate {f_rate / c_rate:.2f}   CPU per mail {f_cpu / c_cpu:.2f}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()

"""Benchmark (not a test): mails/s that pop3-proxy collects from one account, vs a
plain stdlib-poplib loop doing the same RETR+DELE against the same Dovecot.

    python bench/pop3_collect.py [--messages 5000] [--tls starttls-required|none|implicit]
                                 [--max-in-flight 256] [--kafka | --no-encode]

Starts a real Dovecot on loopback (tests/support/dovecot.py) with two mailboxes
of the same N real mails (the SpamAssassin ham corpus, cycling), lets Dovecot
index both, then times:

1. one full collect cycle of pop3-proxy (login, UIDL+LIST, RETR, MailReceived
   built and Avro-encoded, UIDL ledger pending/collected, DELE after the publish,
   QUIT, which is when Dovecot deletes); the publisher and the UIDL store are in
   memory by default, or, with ``--kafka``, a local Kafka broker of the bench's own
   (each event and each ledger write awaited until acks=all); ``--no-encode``
   skips the Avro encoding, to show its share;
2. stdlib poplib on the other mailbox: login (same TLS), UIDL+LIST, then
   RETR i; DELE i for every mail, QUIT.

Prints both rates and the ratio, and checks that every mail was collected exactly
once and both mailboxes are empty afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import poplib
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.logging import setup_logging  # noqa: E402
from ingress.pop3.collector import AccountCollector, CycleReport  # noqa: E402
from ingress.pop3.settings import Pop3Account  # noqa: E402
from core.publish import Publisher  # noqa: E402
from ingress.pop3.kafka import KafkaUidlStore  # noqa: E402
from ingress.pop3.uidls import MemoryUidlStore  # noqa: E402
from schemas import Codec, default_codec  # noqa: E402
from tests.support.dovecot import Dovecot, Mailbox, corpus_messages  # noqa: E402

CPU: dict[str, float] = {}  # CPU seconds of this process per phase (Dovecot's not counted)


class CodecPublisher:
    """Encodes each event as mail.in would carry it, and keeps it in memory."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.mail_ids: list[str] = []
        self.bytes = 0

    encode = True

    async def publish(self, topic: str, event: dict[str, Any], *, event_type: str | None = None) -> None:
        if self.encode:
            self.bytes += len(self.codec.encode("MailReceived", event))
        self.mail_ids.append(event["mail_id"])


class KafkaPublisher(Publisher):
    """pop3-proxy's own publisher to mail.in (each event awaited until acks=all), counting."""

    def __init__(self, codec: Codec, producer: Any) -> None:
        super().__init__(producer.send, codec)
        self.mail_ids: list[str] = []
        self.bytes = 0  # raw mail bytes here: the encoded size is not seen

    async def publish(self, topic: Any, event: Any, *, event_type: str | None = None, **kw: Any) -> None:
        await super().publish(topic, event, event_type=event_type, **kw)
        self.bytes += event["size"]
        self.mail_ids.append(event["mail_id"])


def account(dc: Dovecot, box: Mailbox, tls: str) -> Pop3Account:
    port = dc.pop3s_port if tls == "implicit" else dc.plain_port
    return Pop3Account(name="bench", host=dc.host, port=port, tls=tls, ca_file=dc.ca_file,  # type: ignore[arg-type]
                       user=box.user, password=SecretStr(box.password), recipient="bench@example.com", timeout_s=120)


def poplib_session(dc: Dovecot, box: Mailbox, tls: str) -> poplib.POP3:
    ctx = ssl.create_default_context(cafile=str(dc.ca_file))
    if tls == "implicit":
        pop: poplib.POP3 = poplib.POP3_SSL(dc.host, dc.pop3s_port, context=ctx, timeout=120)
    else:
        pop = poplib.POP3(dc.host, dc.plain_port, timeout=120)
        if tls != "none":
            pop.stls(ctx)
    pop.user(box.user)
    pop.pass_(box.password)
    return pop


def warm_up(dc: Dovecot, box: Mailbox, tls: str) -> int:
    """Let Dovecot index the new Maildir before anything is timed."""
    pop = poplib_session(dc, box, tls)
    count = pop.stat()[0]
    pop.uidl()
    pop.quit()
    return count


def poplib_loop(dc: Dovecot, box: Mailbox, tls: str, n: int) -> tuple[float, int]:
    poplib._MAXLINE = 1 << 20  # type: ignore[attr-defined]  # the default 2048 refuses real mails' long lines
    began = time.monotonic()
    cpu = time.process_time()
    pop = poplib_session(dc, box, tls)
    pop.uidl()
    pop.list()
    octets = 0
    for i in range(1, n + 1):
        _, lines, size = pop.retr(i)
        octets += size
        pop.dele(i)
    pop.quit()
    CPU["poplib"] = time.process_time() - cpu
    return time.monotonic() - began, octets


async def collect(acct: Pop3Account, publisher: Any, store: MemoryUidlStore,
                  max_in_flight: int, mail_in: str = "mail.in") -> tuple[float, CycleReport]:
    c = AccountCollector(acct, publisher, store, "bench", max_in_flight=max_in_flight, mail_in=mail_in)
    began = time.monotonic()
    cpu = time.process_time()
    report = await c.collect_once()
    CPU["pop3-proxy"] = time.process_time() - cpu  # this process only (with --kafka: also librdkafka's threads)
    return time.monotonic() - began, report


def run_collect(args: argparse.Namespace, acct: Pop3Account) -> tuple[float, CycleReport, Any]:
    codec = default_codec()
    if not args.kafka:
        pub = CodecPublisher(codec)
        pub.encode = not args.no_encode
        seconds, report = asyncio.run(collect(acct, pub, MemoryUidlStore(), args.max_in_flight))
        return seconds, report, pub

    from bench.scratch import start_scratch_broker
    from control.broker.topics import ensure_topics
    from core.kafka import AsyncProducer
    from control.settings import Settings
    from core.settings import KafkaSettings
    from schemas.topics import POP3_UIDLS, TopicNames

    tmp = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    broker = start_scratch_broker(tmp)
    try:
        settings = Settings(home=tmp, kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                                          topic_prefix="bench."))
        ensure_topics(settings)
        names = TopicNames("bench.")

        async def go() -> tuple[float, CycleReport, KafkaPublisher]:
            producer = AsyncProducer(settings, "pop3-bench")
            kpub = KafkaPublisher(codec, producer)
            store = KafkaUidlStore(producer, names(POP3_UIDLS))
            try:
                secs, rep = await collect(acct, kpub, store, args.max_in_flight, names.mail_in)
                return secs, rep, kpub
            finally:
                await asyncio.to_thread(producer.close, 10.0)
                kpub.producer = store.producer = None  # type: ignore[assignment]

        result = asyncio.run(go())
        gc.collect()  # the producer goes before the broker does (else librdkafka complains of refusals)
        return result
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--tls", default="starttls-required", choices=["none", "starttls-required", "implicit"])
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--kafka", action="store_true", help="publish to a local Kafka broker (acks=all)")
    parser.add_argument("--no-encode", action="store_true",
                        help="in-memory publisher that skips the Avro encoding (to see what it costs)")
    args = parser.parse_args()
    setup_logging("warning")
    n = args.messages

    with Dovecot() as dc:
        print(f"Dovecot {dc.version}: filling two mailboxes with {n} corpus mails each ...", flush=True)
        ours, peer = dc.mailbox(corpus_messages(n)), dc.mailbox(corpus_messages(n))
        assert warm_up(dc, ours, args.tls) == n and warm_up(dc, peer, args.tls) == n

        where = "Kafka" if args.kafka else "memory, not encoded" if args.no_encode else "memory, Avro-encoded"
        print(f"pop3-proxy: one collect cycle ({args.tls}, publisher: {where}) ...", flush=True)
        mg, report, pub = run_collect(args, account(dc, ours, args.tls))
        print("stdlib poplib: RETR+DELE loop ...", flush=True)
        plain, octets = poplib_loop(dc, peer, args.tls, n)
        left = (ours.count(), peer.count())

    print()
    print(f"{'peer':<52} {'seconds':>8} {'mails/s':>9} {'MB/s':>7} {'CPU µs/mail':>12}")
    print(f"{'mailgate pop3-proxy collect (RETR, event, DELE)':<52} {mg:>8.2f} {n / mg:>9.0f}"
          f" {octets / mg / 1e6:>7.1f} {CPU['pop3-proxy'] / n * 1e6:>12.0f}")
    print(f"{'stdlib poplib loop (RETR, DELE)':<52} {plain:>8.2f} {n / plain:>9.0f} {octets / plain / 1e6:>7.1f}"
          f" {CPU['poplib'] / n * 1e6:>12.0f}")
    print(f"ratio pop3-proxy / poplib: {plain / mg:.2f}")
    print(f"collected {report.collected}, deleted {report.deleted}, distinct mail ids {len(set(pub.mail_ids))},"
          f" {'raw' if args.kafka else 'encoded'} {pub.bytes / 1e6:.1f} MB; left on the server: {left[0]} / {left[1]}")
    if report.collected != n or len(set(pub.mail_ids)) != n or left != (0, 0):
        sys.exit("not every mail was collected exactly once and deleted")


if __name__ == "__main__":
    main()

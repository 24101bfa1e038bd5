"""Benchmark (not a test): delivered mails/s, mailgate's smtp-client vs Postfix relaying.

    python bench/delivery_speed.py [--messages 20000] [--size 4096] [--concurrency 20] [--bootstrap HOST:PORT]

In one run on this machine:
1. Postfix's ``smtp-sink`` on a free port (accepts and discards; it counts).
2. mailgate: N MailRouted records (one recipient each, ~SIZE bytes, destination
   example.com) are put on mail.out of a Kafka broker (a local one of its own in
   a temp dir, or --bootstrap); then ``mailgate service smtp-client`` starts and
   delivers them to the sink (``destination_concurrency`` = --concurrency).
   Timed from the first mail the sink counts to the last.
3. Postfix: an instance of its own (temp dirs, free ports, no content filter)
   is fed the same N mails over SMTP while its smtp transport is deferred
   (``defer_transports = smtp``); then the deferral is lifted and
   ``postqueue -f`` flushes the queue to the same sink with the same
   concurrency (``smtp_destination_concurrency_limit``). Timed the same way.
Prints both rates, the ratio, and the load average (the 2 cores are shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib

from bench.scratch import start_scratch_broker
from control.broker.topics import ensure_topics
from core.kafka import make_producer
from core.publish import Encoder, produce_many
from control.settings import Settings
from core.settings import KafkaSettings
from schemas import new_mail_id, pack_message
from tests.support.ports import free_port, wait_listening


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        sys.exit(f"{name} not found: install Postfix (apt-get install postfix)")
    return path


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def mails(n: int, size: int) -> list[bytes]:
    filler = ("The quick brown fox jumps over the lazy dog. " * 2)[:76] + "\r\n"
    out = []
    for i in range(n):
        head = (f"From: bench@outside.test\r\nTo: rcpt@example.com\r\nSubject: delivery bench {i}\r\n"
                f"Message-ID: <bench-{i}-{uuid.uuid4().hex[:8]}@outside.test>\r\n\r\n")
        body = filler * max(1, (size - len(head)) // len(filler))
        out.append((head + body).encode())
    return out


class SmtpSink:
    """Postfix's smtp-sink with its running counter (-c) on stdout."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.out = workdir / "smtp-sink.count"
        self.proc = subprocess.Popen([tool("smtp-sink"), "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "256"],
                                     stdout=open(self.out, "wb"), stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        wait_listening("127.0.0.1", self.port, 10)

    def count(self) -> int:
        tail = self.out.read_bytes()[-400:].decode(errors="replace").replace("\r", "\n")
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def wait(self, target: int, timeout: float, base: int | None = None) -> tuple[float, float]:
        """(time the first mail of this round came, time the target was reached); ``base``: the
        count before this round (read now if not given)."""
        base, first = self.count() if base is None else base, 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.count() - base
            if got > 0 and not first:
                first = time.monotonic()
            if got >= target:
                return first, time.monotonic()
            time.sleep(0.02)
        raise SystemExit(f"sink got {self.count() - base} of {target} within {timeout:.0f}s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_mailgate(bootstrap: str, data: list[bytes], sink: SmtpSink, args: argparse.Namespace,
                 workdir: Path) -> float:
    # The client's journal goes under the run's temp dir (removed at the end), not the user's home.
    settings = Settings(home=workdir / "home",
                        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
                                            partitions=2))
    ensure_topics(settings)
    encoder = Encoder()
    producer = make_producer(settings, "bench-feeder")
    now = int(time.time() * 1000)
    topic = f"{settings.kafka.topic_prefix}mail.out"
    records = ({"mail_id": new_mail_id(), "event_time": now, "node": "bench", "queue": "out", "reasons": [],
                "destination": "example.com", "mail_from": "bench@outside.test", "rcpt_to": ["rcpt@example.com"],
                "received_time": now, "client_address": None, "size": len(raw), "message": pack_message(raw)}
               for raw in data)
    produce_many(producer, topic, (encoder.envelope(r, event_type="MailRouted", key=b"example.com") for r in records))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")},
           "MAILGATE_HOME": str(settings.home),
           "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "MAILGATE_SMTP_CLIENT__SMARTHOST": f"127.0.0.1:{sink.port}",
           "MAILGATE_SMTP_CLIENT__DESTINATION_CONCURRENCY": str(args.concurrency),
           "MAILGATE_SMTP_CLIENT__CONCURRENCY": str(args.concurrency * 2), "MAILGATE_LOG_LEVEL": "warning"}
    log = open(workdir / "smtp-client.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "service", "smtp-client"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        first, last = sink.wait(len(data), timeout=1200)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
    cpu = usage.ru_utime + usage.ru_stime
    print(f"  smtp-client used {cpu:.1f}s CPU in all: {cpu / len(data) * 1000:.2f} ms per mail (start and stop included)")
    return len(data) / (last - first)


MAIN_CF = """compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
myhostname = bench.localdomain
mydestination =
local_recipient_maps =
local_transport = error:no local delivery
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
transport_maps = inline:{{ example.com=smtp:[127.0.0.1]:{sink} }}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
default_process_limit = 100
smtp_destination_concurrency_limit = {c}
default_destination_concurrency_limit = {c}
initial_destination_concurrency = {c}
smtp_connection_cache_on_demand = yes
qmgr_message_active_limit = 40000
defer_transports = smtp
"""

MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


async def inject(port: int, data: list[bytes], sessions: int) -> None:
    async def session(part: list[bytes]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False)
        await client.connect()
        for raw in part:
            await client.sendmail("bench@outside.test", ["rcpt@example.com"], raw)
        await client.quit()

    await asyncio.gather(*(session(data[i::sessions]) for i in range(sessions)))


def run_postfix(data: list[bytes], sink: SmtpSink, args: argparse.Namespace, workdir: Path) -> float:
    d = workdir / "postfix"
    (d / "etc").mkdir(parents=True)
    (d / "data").mkdir()
    (d / "queue").mkdir()
    shutil.chown(d / "data", "postfix")
    port = free_port()
    (d / "etc/main.cf").write_text(MAIN_CF.format(d=d, sink=sink.port, c=args.concurrency))
    (d / "etc/master.cf").write_text(MASTER_CF.format(port=port))
    pf = ["postfix", "-c", str(d / "etc")]
    subprocess.run([tool("postfix"), *pf[1:], "start"], check=True, capture_output=True)
    try:
        wait_listening("127.0.0.1", port, 20)
        began = time.monotonic()
        asyncio.run(inject(port, data, 20))
        print(f"  postfix took the {len(data)} mails into its queue in {time.monotonic() - began:.1f}s (held)")
        time.sleep(1)

        def release() -> None:
            subprocess.run([tool("postconf"), "-c", str(d / "etc"), "-e", "defer_transports ="], check=True)
            subprocess.run([tool("postfix"), *pf[1:], "reload"], check=True, capture_output=True)
            subprocess.run([tool("postqueue"), "-c", str(d / "etc"), "-f"], check=True)

        # the sink is watched from before the release: delivery starts with the reload, and on a fast
        # machine the whole queue had gone out before postqueue -f returned (the count was then read too late)
        base = sink.count()
        releaser = threading.Thread(target=release, name="postfix-release")
        releaser.start()
        first, last = sink.wait(len(data), timeout=1200, base=base)
        releaser.join()
    finally:
        subprocess.run([tool("postfix"), *pf[1:], "stop"], capture_output=True, check=False)
    return len(data) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=20, help="parallel sessions to the sink, both sides")
    parser.add_argument("--bootstrap", help="an existing Kafka (default: a local broker of its own)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-delivery-bench-"))
    os.chmod(workdir, 0o755)
    broker = None
    if not args.bootstrap:
        broker = start_scratch_broker(workdir, heap="1g")
    bootstrap = args.bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
    sink = SmtpSink(workdir)
    data = mails(args.messages, args.size)
    try:
        print(f"{args.messages} mails of {len(data[0])} bytes, {args.concurrency} sessions to smtp-sink; {load()}")
        mg = run_mailgate(bootstrap, data, sink, args, workdir)
        print(f"mailgate smtp-client: {mg:,.0f} mails/s delivered (mail.out → smtp-sink); {load()}")
        pf = run_postfix(data, sink, args, workdir)
        print(f"Postfix relay:        {pf:,.0f} mails/s delivered (queue → smtp-sink); {load()}")
        print(f"ratio mailgate/Postfix: {mg / pf:.2f}")
    finally:
        sink.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

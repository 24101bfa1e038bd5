"""Benchmark (not a test): how many duplicates does `kill -9` of smtp-client under load leave?

    python bench/delivery_kill.py [--rounds 5] [--messages 2000] [--bootstrap HOST:PORT]

Each round: MESSAGES mails on mail.out, `mailgate service smtp-client` delivering
them to an aiosmtpd sink at full speed, `kill -9` at a random moment, a new
client, and a count of what the sink got twice. A duplicate is a mail the sink
answered 250 for twice: its first 250 was read by the killed client (or still
in its socket buffer) before the delivery log record left the process. Mails the
sink took after the client was gone are counted apart ("orphans"). Prints the
figures of each round and the load average (the 2 cores are shared).
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

from bench.scratch import start_scratch_broker
from control.topics import ensure_topics
from tests.integration.smtp_client.conftest import Harness, message
from tests.integration.smtp_client.peers import ScriptedSink
from tests.integration.smtp_client.test_kill_9 import service_env, start
from tests.support.kafka import Broker


def one_round(bootstrap: str, n: int, workdir: Path) -> tuple[int, int, int, int]:
    from tests.integration.smtp_client.conftest import settings_for

    settings = settings_for(Broker("external", bootstrap))
    ensure_topics(settings)
    h = Harness(settings)
    with ScriptedSink() as sink:
        h.feed(*(h.routed(message(f"kill {i}"), [f"k{i}@dest.test"]) for i in range(n)))
        env = service_env(settings, sink.address)
        proc = start(env, workdir / "client.log")
        try:
            sink.wait_for(random.randint(n // 10, n // 2), timeout=300)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            at_kill = len(sink.mails)
            proc = start(env, workdir / "client.log")
            sink.wait_for(n, timeout=600)
            time.sleep(2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    counts = Counter(m.rcpt_to[0] for m in sink.mails)
    lost = n - len(set(counts) | {m.rcpt_to[0] for m in sink.handler.orphans})
    return at_kill, sum(c - 1 for c in counts.values()), len(sink.handler.orphans), lost


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
    total_dups = 0
    try:
        for r in range(args.rounds):
            at_kill, dups, orphans, lost = one_round(bootstrap, args.messages, workdir)
            total_dups += dups
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"round {r + 1}: kill -9 after {at_kill} of {args.messages}: {dups} duplicates, "
                  f"{orphans} orphans, {lost} lost; load average {load}")
        print(f"duplicates after kill -9: {total_dups} in {args.rounds} kills "
              f"({total_dups / args.rounds:.1f} per kill)")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()

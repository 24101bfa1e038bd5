"""Benchmark (not a test): mail through the whole gateway while its processes are killed.

    python bench/chaos.py [--mails 20000] [--senders 8] [--every 15]

`mailgate up` with a local broker of its own (heap 384m) delivers to a recording sink
while N mails with unique subjects go in over SMTP, and every EVERY seconds one more
process gets `kill -9`: each service in turn, then the broker, then the whole node
(engine, services and broker), after which `mailgate up` is started again. A sender
whose mail got no 250 (451, a dropped connection) sends the same mail again (same
Message-ID), as an MTA does. At the end (when the sink has been quiet for 20 s) it prints:

- accepted: mails that got a 250; delivered: distinct mails at the sink; lost:
  accepted but never delivered (target 0);
- duplicates, split: ingress duplicates (the sender sent the mail again after an
  attempt whose outcome it could not know -- a dropped connection or a 451 after the
  broker may have stored it; each such attempt may be stored) and delivery
  duplicates (copies beyond every attempt that may have been stored: the gateway
  delivered one stored mail twice; target 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.engine.services import SERVICES  # noqa: E402
from tests.support.chaos import Ledger, kill, kill_node, outcome, send_all, service_pid, subjects  # noqa: E402
from tests.support.gateway import Gateway  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.sink import Sink  # noqa: E402


def chaos(gw: Gateway, every: float, done: threading.Event, say: list[str]) -> None:
    targets = [*SERVICES, "kafka", "node"]
    for target in targets:
        if done.wait(every):
            return
        assert gw.proc is not None
        if target == "node":
            kill_node(gw)
            gw.start()
            say.append("node killed and started again")
        elif target == "kafka":
            pid = int((gw.home / "kafka" / "broker.pid").read_text())
            say.append(f"kafka {pid} killed: {kill(pid)}")
        elif SERVICES[target].auto_start:
            say.append(f"{target} killed: {kill(service_pid(gw.proc.pid, target))}")


def report(ledger: Ledger, sink: Sink, mails: int, took: float) -> None:
    o = outcome(ledger, sink)
    print(f"mails {mails} in {took:.0f} s: accepted {o.accepted}, delivered {o.delivered} distinct "
          f"({o.copies} in all), lost {len(o.lost)} (not delivered when the sink had been quiet for "
          f"the drain time)")
    print(f"duplicates: ingress {o.ingress} (sender retried an attempt it could not know the outcome of), "
          f"delivery {o.delivery} (one stored mail delivered twice)")
    if o.lost:
        print("lost, first ten:", o.lost[:10])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=20000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between two kills")
    parser.add_argument("--drain", type=float, default=180.0, help="end when the sink was quiet this long")
    parser.add_argument("--home", type=Path, help="keep the node's data and log here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Sink(free_port()) as sink:
        gw = Gateway("local", args.home or Path(tmp) / "node", sink.address, MAILGATE_BROKER__PORT=str(free_port()),
                     MAILGATE_BROKER__CONTROLLER_PORT=str(free_port()), MAILGATE_BROKER__HEAP="384m",
                     MAILGATE_CONTROL__METRICS_PORT_BASE="0")
        del gw.env["MAILGATE_KAFKA__BOOTSTRAP_SERVERS"]  # `mailgate up` starts and supervises its broker
        ledger, done, said = Ledger(), threading.Event(), []
        began = time.monotonic()
        with gw:
            killer = threading.Thread(target=chaos, args=(gw, args.every, done, said), daemon=True)
            killer.start()
            send_all(gw.smtp_port, args.mails, args.senders, ledger)
            done.set()
            killer.join()
            quiet, seen = time.monotonic(), -1
            while time.monotonic() - quiet < args.drain and not set(ledger.accepted) <= set(subjects(sink)):
                if len(sink.mails) != seen:
                    seen, quiet = len(sink.mails), time.monotonic()
                time.sleep(1)
        for line in said:
            print(line)
        report(ledger, sink, args.mails, time.monotonic() - began)
        print(f"load average {os.getloadavg()[0]:.1f} (2 cores, shared)")


if __name__ == "__main__":
    main()

"""Benchmark (not a test): mail through the whole gateway while its processes are killed.

    python bench/chaos.py [--mails 20000] [--senders 8] [--every 15]

`mailgate up` with a local broker of its own (heap 384m) delivers to a recording sink
while N mails with unique subjects go in over SMTP, and every EVERY seconds one more
process gets `kill -9`: each service in turn, then the broker, then the whole node
(engine, services and broker), after which `mailgate up` is started again. A sender
whose mail got no 250 (451, a dropped connection) sends the same mail again, as an
MTA does. At the end (when the sink has been quiet for 20 s) it prints:

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
import asyncio
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402

from control.broker.process import cmdline  # noqa: E402
from control.engine.services import SERVICES  # noqa: E402
from tests.support.gateway import Gateway  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.sink import Sink  # noqa: E402
from tests.support.smtp import send_mail  # noqa: E402


@dataclass
class Ledger:
    """Per mail: 250s got, and attempts whose outcome the sender could not know."""

    accepted: Counter[str] = field(default_factory=Counter)
    unsure: Counter[str] = field(default_factory=Counter)


def mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "chaos@outside.test", "u@example.com", subject
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


async def sender(port: int, queue: asyncio.Queue[str], ledger: Ledger) -> None:
    while not queue.empty():
        subject = queue.get_nowait()
        while True:
            try:
                await send_mail(port, mail(subject), "chaos@outside.test", ["u@example.com"], timeout=30)
                ledger.accepted[subject] += 1
                break
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 451:  # the broker may still store it after the SMTP timeout
                    ledger.unsure[subject] += 1
                elif exc.code >= 500:
                    break
            except (aiosmtplib.SMTPException, OSError):  # dropped between DATA and the reply: unknown
                ledger.unsure[subject] += 1
            await asyncio.sleep(1.0)


def send_all(port: int, mails: int, senders: int, ledger: Ledger) -> None:
    async def main() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for i in range(mails):
            queue.put_nowait(f"chaos {i}")
        await asyncio.gather(*(sender(port, queue, ledger) for _ in range(senders)))
    asyncio.run(main())


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def service_pid(engine: int, name: str) -> int | None:
    for pid in children(engine):
        args = cmdline(pid)
        if args[-2:] == ["service", name]:
            return pid
    return None


def kill(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def kill_node(gw: Gateway) -> None:
    """kill -9 of the engine, its services and its broker at once: a node that dies."""
    assert gw.proc is not None
    broker = gw.home / "kafka" / "broker.pid"
    pids = [gw.proc.pid, *children(gw.proc.pid)]
    if broker.exists():
        pids.append(int(broker.read_text()))
    for pid in pids:
        kill(pid)
    gw.proc.wait()


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


def subjects(sink: Sink) -> Counter[str]:
    return Counter(m.data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip().decode() for m in sink.mails)


def report(ledger: Ledger, sink: Sink, mails: int, took: float) -> None:
    got = subjects(sink)
    accepted = set(ledger.accepted)
    lost = accepted - set(got)
    ingress = delivery = 0
    for subject, copies in got.items():
        stored_at_most = ledger.accepted[subject] + ledger.unsure[subject]
        delivery += max(0, copies - stored_at_most)
        ingress += max(0, min(copies, stored_at_most) - 1)
    print(f"mails {mails} in {took:.0f} s: accepted {len(accepted)}, delivered {len(got)} distinct "
          f"({sum(got.values())} in all), lost {len(lost)} (not delivered when the sink had been quiet for "
          f"the drain time)")
    print(f"duplicates: ingress {ingress} (sender retried an attempt it could not know the outcome of), "
          f"delivery {delivery} (one stored mail delivered twice)")
    if lost:
        print("lost, first ten:", sorted(lost)[:10])


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

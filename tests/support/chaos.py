"""Chaos runs (bench/chaos.py, tests/integration/test_chaos.py): senders that retry as an MTA does,
kill -9 of a node's processes, and the count at the sink: lost, ingress and delivery duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib

from control.broker.process import cmdline
from tests.support.gateway import Gateway
from tests.support.sink import Sink
from tests.support.smtp import send_mail


@dataclass
class Ledger:
    """Per mail: 250s got, and attempts whose outcome the sender could not know."""

    accepted: Counter[str] = field(default_factory=Counter)
    unsure: Counter[str] = field(default_factory=Counter)


def mail(subject: str) -> bytes:
    """A mail as an MTA hands it on: with a Message-ID, the same on every retry."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "chaos@outside.test", "u@example.com", subject
    msg["Message-ID"] = make_msgid(subject.replace(" ", "."), "outside.test")
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


async def sender(port: int, queue: asyncio.Queue[str], ledger: Ledger) -> None:
    while not queue.empty():
        subject = queue.get_nowait()
        raw = mail(subject)
        while True:
            try:
                await send_mail(port, raw, "chaos@outside.test", ["u@example.com"], timeout=30)
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


def subjects(sink: Sink) -> Counter[str]:
    return Counter(m.data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip().decode() for m in sink.mails)


@dataclass(frozen=True)
class Outcome:
    accepted: int
    delivered: int  # distinct mails at the sink
    copies: int  # all mails at the sink
    lost: list[str]  # accepted, never delivered
    ingress: int  # copies of a mail the sender sent again after an attempt it could not know the outcome of
    delivery: int  # copies beyond every attempt that may have been stored: one stored mail delivered twice


def outcome(ledger: Ledger, sink: Sink) -> Outcome:
    got = subjects(sink)
    ingress = delivery = 0
    for subject, copies in got.items():
        stored_at_most = ledger.accepted[subject] + ledger.unsure[subject]
        delivery += max(0, copies - stored_at_most)
        ingress += max(0, min(copies, stored_at_most) - 1)
    return Outcome(len(ledger.accepted), len(got), sum(got.values()), sorted(set(ledger.accepted) - set(got)),
                   ingress, delivery)

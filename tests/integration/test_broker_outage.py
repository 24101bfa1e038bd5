"""Kafka down → 451, nothing published; Kafka back → mail flows, mailgate not restarted.

Uses a broker of its own (started and stopped with the `mailgate kafka` CLI), so the
session broker other tests share is never interrupted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.support.gateway import Gateway
from tests.support.ports import free_port
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic


def mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "s@outside.test", "u@example.com", subject
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


async def send(port: int, subject: str) -> str:
    text = await send_mail(port, mail(subject), sender="s@outside.test", recipients=["u@example.com"])
    return text.rsplit(" ", 1)[1]  # the mail id of "2.0.0 Ok: queued as <id>"


class Cli:
    def __init__(self, home: Path) -> None:
        outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        self.port = free_port()
        self.env = {**outside, "MAILGATE_HOME": str(home), "MAILGATE_BROKER__PORT": str(self.port),
                    "MAILGATE_BROKER__CONTROLLER_PORT": str(free_port()), "MAILGATE_BROKER__HEAP": "512m"}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "control.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=180)


@pytest.fixture
def own_broker(tmp_path: Path):
    cli = Cli(tmp_path / "own")
    started = cli("kafka", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    yield cli
    cli("kafka", "stop")


def test_kafka_down_gives_451_and_recovers_without_restart(own_broker: Cli, sink: Sink, tmp_path: Path) -> None:
    assert own_broker("kafka", "status").returncode == 0
    gw = Gateway(f"127.0.0.1:{own_broker.port}", tmp_path / "node", sink.address,
                 MAILGATE_KAFKA__PRODUCE_TIMEOUT_S="3")
    with gw:
        first = asyncio.run(send(gw.smtp_port, "before the outage"))
        sink.wait_for(1, timeout=60)

        stopped = own_broker("kafka", "stop")
        assert stopped.returncode == 0 and "Kafka stopped" in stopped.stdout
        assert own_broker("kafka", "status").returncode == 3

        began = time.monotonic()
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            asyncio.run(send(gw.smtp_port, "during the outage"))
        assert refused.value.code == 451 and "4.3.0" in refused.value.message
        assert time.monotonic() - began < 15

        restarted = own_broker("kafka", "start")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        deadline, after = time.monotonic() + 60, None
        while after is None:  # a sending MTA retries a 451; so does this test
            try:
                after = asyncio.run(send(gw.smtp_port, "after the outage"))
            except aiosmtplib.SMTPDataError as exc:
                assert exc.code == 451 and time.monotonic() < deadline, exc
                time.sleep(1)
        received = sink.wait_for(2, timeout=90)
        subjects = sorted(line for m in received for line in m.data.splitlines() if line.startswith(b"Subject:"))
        assert subjects == [b"Subject: after the outage", b"Subject: before the outage"]

        in_queue = read_topic(gw.settings(), f"{gw.prefix}mail.in")
        assert sorted(r.value["mail_id"] for r in in_queue) == sorted([first, after])  # nothing of the 451 mail
    assert "service exited" not in gw.log(), gw.log()  # the same processes served before and after

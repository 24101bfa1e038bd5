"""The spam filter learns online, in the running gateway on the real broker: a report
(`mailgate report`) changes the verdict on the next near-duplicate within seconds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic
from tests.unit.spam.spam_helpers import mutate, plain_spams

pytestmark = pytest.mark.integration


def send(gw: Gateway, raw: bytes) -> str:
    text = asyncio.run(send_mail(gw.smtp_port, raw, sender="news@outside.test", recipients=["bob@example.com"]))
    return text.rsplit(" ", 1)[1]


def report(gw: Gateway, label: str, path: Path) -> None:
    env = {**gw.env, "COLUMNS": "250"}  # the console wraps at 80 columns without a terminal (long tmp paths)
    run = subprocess.run([sys.executable, "-m", "control.cli", "report", label, str(path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"reported {path} as {label}" in run.stdout


def wait_for(gw: Gateway, topic: str, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_topic(gw.settings(), f"{gw.prefix}{topic}"):
            if predicate(record.value):
                return record.value
        time.sleep(0.5)
    raise AssertionError(f"nothing matching on {topic} within {timeout:.0f}s:\n{gw.log()}")


@pytest.fixture
def gateway(broker: Broker, sink: Sink, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose spam filter starts from nothing (no base model): what reports teach it shows alone."""
    with Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address, MAILGATE_SPAM__BASE_MODEL="none") as gw:
        yield gw


def test_report_spam_then_ham_changes_the_next_verdict(gateway: Gateway, tmp_path: Path) -> None:
    (spam,) = plain_spams(1)
    reported = tmp_path / "reported.eml"
    reported.write_bytes(spam)

    before = send(gateway, mutate(spam, "Ann Lee", "a0"))
    scored = wait_for(gateway, "mail.scored", lambda r: r["mail_id"] == before)
    assert scored["verdict"] != "spam"  # nothing learnt yet: not called spam
    wait_for(gateway, "mail.out", lambda r: r["mail_id"] == before)

    report(gateway, "spam", reported)
    pattern = wait_for(gateway, "spam.patterns", lambda r: r["label"] == "spam")
    time.sleep(1.0)  # the pattern reaches every node's table through the topic
    again = send(gateway, mutate(spam, "Mary Smith", "b1"))
    quarantined = wait_for(gateway, "mail.spam", lambda r: r["mail_id"] == again)
    assert quarantined["reasons"][0].startswith("spam filter: spam")
    scored = wait_for(gateway, "mail.scored", lambda r: r["mail_id"] == again)
    assert pattern["pattern_id"] in scored["matched"]

    report(gateway, "ham", reported)
    wait_for(gateway, "spam.patterns", lambda r: r["label"] == "ham")
    time.sleep(1.0)
    last = send(gateway, mutate(spam, "Joe Bloggs", "c2"))
    wait_for(gateway, "mail.out", lambda r: r["mail_id"] == last)
    out = {r.value["mail_id"] for r in read_topic(gateway.settings(), f"{gateway.prefix}mail.out")}
    assert out == {before, last}  # the one called spam never went out

"""A fresh gateway catches spam on day one (the shipped base model, no report), and delivers the
mail it is unsure of marked: X-Spam-Flag / X-Spam-Status, and a subject tag where a domain sets one."""

from __future__ import annotations

import asyncio
import email
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.spam.scoring import SpamFilter
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic
from tests.unit.spam.spam_helpers import html_mail

pytestmark = pytest.mark.integration

OBVIOUS = html_mail("<html><body><p>Dear customer, we have a special offer for you this week only: free shipping "
                    "on every order over $50. Click here to see the catalogue.</p>"
                    "<a href='http://shop.test/c'>catalogue</a></body></html>", subject="Free shipping this week")
UNSURE = (b"From: Sales <sales@consult.test>\r\nTo: bob@example.com, carol@example.org\r\nSubject: New catalogue\r\n"
          b"Date: Thu, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <6@consult.test>\r\n"
          b"X-Spam-Flag: NO\r\nX-Spam-Status: No, forged by the sender\r\n\r\n"
          b"Hello,\r\n\r\nour new catalogue of office furniture is out. You can order online at "
          b"http://consult.test/catalogue with a discount for new customers.\r\n\r\nRegards\r\n")
HAM = (b"From: Bob <bob@partner.test>\r\nTo: bob@example.com\r\nSubject: Re: build failed\r\n"
       b"Date: Thu, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <3@partner.test>\r\nIn-Reply-To: <1@example.com>\r\n\r\n"
       b"I looked at the log; the arm runner ran out of disk. I will clean it up tomorrow.\r\n")


@pytest.fixture
def gateway(broker: Broker, sink: Sink, tmp_path: Path) -> Iterator[Gateway]:
    tags = json.dumps({"example.org": {"spam_subject_tag": "[SPAM?]"}})
    with Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address, MAILGATE_SPAM__BASE_MODEL="builtin",
                 MAILGATE_VALIDATION__DECISION__MARK_UNSURE="true", MAILGATE_VALIDATION__DECISION__DOMAINS=tags) as gw:
        yield gw


def send(gw: Gateway, raw: bytes, recipients: list[str]) -> str:
    text = asyncio.run(send_mail(gw.smtp_port, raw, sender="sales@consult.test", recipients=recipients))
    return text.rsplit(" ", 1)[1]


def test_the_mails_are_what_the_test_says_they_are() -> None:
    """The shipped base's own view, so that the gateway test below tests the routing, not the mails."""
    base = SpamFilter()
    assert base.score(OBVIOUS, "sales@consult.test", ["bob@example.com"]).verdict == "spam"
    assert base.score(UNSURE, "sales@consult.test", ["bob@example.com"]).verdict == "unsure"
    assert base.score(HAM, "sales@consult.test", ["bob@example.com"]).verdict == "ham"


def test_a_fresh_gateway_quarantines_spam_and_marks_what_it_is_unsure_of(gateway: Gateway, sink: Sink) -> None:
    spam_id = send(gateway, OBVIOUS, ["bob@example.com"])
    held = gateway.wait_for_mail("mail.spam", spam_id)
    assert held["reasons"][0].startswith("spam filter: spam")
    assert any(r.startswith("rules:") for r in held["reasons"]), held["reasons"]

    unsure_id = send(gateway, UNSURE, ["bob@example.com", "carol@example.org"])
    ham_id = send(gateway, HAM, ["bob@example.com"])
    delivered = {}
    deadline = time.monotonic() + 60
    while len(delivered) < 3 and time.monotonic() < deadline:
        delivered = {(m.rcpt_to[0], email.message_from_bytes(m.data)["Message-ID"]): email.message_from_bytes(m.data)
                     for m in sink.mails}
        time.sleep(0.2)
    assert len(delivered) == 3, (sorted(delivered), gateway.log())

    for rcpt, subject in (("bob@example.com", "New catalogue"), ("carol@example.org", "[SPAM?] New catalogue")):
        mail = delivered[(rcpt, "<6@consult.test>")]
        assert mail.get_all("X-Spam-Flag") == ["YES"], mail.get_all("X-Spam-Flag")  # the sender's NO is gone
        (status,) = mail.get_all("X-Spam-Status")
        assert status.startswith("Unsure, score=0.") and "reasons=" in status and "forged" not in status
        assert mail["Subject"] == subject
    ham = delivered[("bob@example.com", "<3@partner.test>")]
    assert ham["X-Spam-Flag"] is None and ham["Subject"] == "Re: build failed"
    assert not any(r.value["mail_id"] in (unsure_id, ham_id)
                   for r in read_topic(gateway.settings(), f"{gateway.prefix}mail.spam"))


def cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**gw.env, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "control.cli", *args], env=env, capture_output=True, text=True,
                          timeout=90)


def test_reports_adapt_the_base_and_a_reset_returns_to_it(gateway: Gateway, tmp_path: Path) -> None:
    reported = tmp_path / "unsure.eml"
    reported.write_bytes(UNSURE)
    assert cli(gateway, "report", "spam", str(reported)).returncode == 0
    deadline = time.monotonic() + 60
    while not read_topic(gateway.settings(), f"{gateway.prefix}spam.patterns") and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)  # the pattern reaches every node's table through the topic
    again = send(gateway, UNSURE.replace(b"<6@consult.test>", b"<7@consult.test>"), ["bob@example.com"])
    assert gateway.wait_for_mail("mail.scored", again)["verdict"] == "spam"

    refused = cli(gateway, "spam-reset")
    assert refused.returncode != 0 and "--yes" in refused.stderr + refused.stdout
    done = cli(gateway, "spam-reset", "--yes")
    assert done.returncode == 0 and "1 learned patterns removed" in done.stdout, done.stdout + done.stderr
    time.sleep(2.0)  # the tombstone reaches every node
    last = send(gateway, UNSURE.replace(b"<6@consult.test>", b"<8@consult.test>"), ["bob@example.com"])
    assert gateway.wait_for_mail("mail.scored", last)["verdict"] == "unsure"

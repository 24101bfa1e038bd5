"""The walking skeleton end to end: a real SMTP client → smtp-server → Kafka →
message-validation (Faust) → smtp-client → an SMTP sink, all started by `mailgate up`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from email.message import EmailMessage
from email.utils import make_msgid


from tests.support.gateway import Gateway
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic


def crlf_message(i: int) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = "sender@outside.test"
    msg["To"] = f"user{i}@example.com"
    msg["Subject"] = f"skeleton mail {i}"
    msg["Message-ID"] = make_msgid(idstring=f"m{i}", domain="outside.test")
    msg.set_content(f"Body of mail {i}.\n\n.leading dot line\nünïcode line\n" + "x" * (i * 40))
    return msg["Message-ID"], msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


async def send_all(port: int, mails: list[tuple[str, bytes]]) -> list[str]:
    async def one(i: int, data: bytes) -> str:
        return await send_mail(port, data, sender="sender@outside.test", recipients=[f"user{i}@example.com"])

    return await asyncio.gather(*(one(i, data) for i, (_, data) in enumerate(mails)))


def test_fifty_mails_arrive_once_with_identical_bodies(gateway: Gateway, sink: Sink) -> None:
    mails = [crlf_message(i) for i in range(50)]
    replies = asyncio.run(send_all(gateway.smtp_port, mails))
    assert all(r.startswith("2.0.0 Ok: queued as ") for r in replies), replies

    received = sink.wait_for(50, timeout=90)
    by_id = {}
    for mail in received:
        mid = next(line.split(b":", 1)[1].strip() for line in mail.data.split(b"\r\n")
                   if line.lower().startswith(b"message-id:"))
        assert mid.decode() not in by_id, f"{mid!r} delivered twice"
        by_id[mid.decode()] = mail
    sent = dict(mails)
    assert set(by_id) == set(sent)
    time.sleep(3)  # a late second copy would come within the smtp-client's commit interval
    assert len(sink.mails) == 50, f"{len(sink.mails) - 50} mails delivered twice"
    for mid, data in sent.items():
        assert by_id[mid].data == data, f"{mid}: body changed on the way"
        assert by_id[mid].mail_from == "sender@outside.test"

    settings = gateway.settings()
    queued_ids = {r.rsplit(" ", 1)[1] for r in replies}
    delivered = [r for r in read_topic(settings, f"{gateway.prefix}mail.delivery") if r.event_type == "MailDelivered"]
    assert {r.value["mail_id"] for r in delivered} == queued_ids
    assert all(r.headers["event-type"] == "MailDelivered" and r.headers["mail-id"] == r.value["mail_id"]
               for r in delivered)
    routed = read_topic(settings, f"{gateway.prefix}mail.out")
    assert {r.key for r in routed} == {b"example.com"}  # keyed by destination domain


def test_mail_for_two_domains_is_split_per_destination(gateway: Gateway, sink: Sink) -> None:
    _, data = crlf_message(1)
    asyncio.run(send_mail(gateway.smtp_port, data, sender="s@outside.test",
                          recipients=["a@example.com", "b@example.org", "c@example.com"]))
    received = sink.wait_for(2, timeout=60)
    assert sorted(sorted(m.rcpt_to) for m in received) == [["a@example.com", "c@example.com"], ["b@example.org"]]
    routed = read_topic(gateway.settings(), f"{gateway.prefix}mail.out")
    assert sorted(r.key for r in routed) == [b"example.com", b"example.org"]


def test_swaks_gets_relay_denied_for_foreign_domains(gateway: Gateway, sink: Sink) -> None:
    run = subprocess.run(["swaks", "--server", f"127.0.0.1:{gateway.smtp_port}", "--to", "victim@elsewhere.test",
                          "--from", "spammer@outside.test", "--timeout", "20"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "550 5.7.1 Relay access denied" in run.stdout
    ok = subprocess.run(["swaks", "--server", f"127.0.0.1:{gateway.smtp_port}", "--to", "alice@example.com",
                         "--from", "friend@outside.test", "--timeout", "20"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout
    assert "250 2.0.0 Ok: queued as" in ok.stdout
    assert [m.rcpt_to for m in sink.wait_for(1)] == [["alice@example.com"]]

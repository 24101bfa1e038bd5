"""message-validation's phase-2 filters in the running gateway (`mailgate up`), on the
real broker, with the loopback DNS server (tests/support/dns.py) serving the DKIM keys
and DMARC policies: DKIM pass/fail written as Authentication-Results on the delivered
mail, DMARC p=reject quarantined, a content rule to mail.spam, CISS for example.org."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control.broker.topics import ensure_topics
from core.kafka import make_producer
from schemas import default_codec
from schemas.topics import CISS_SENDERS, TopicNames
from tests.support.dns import DnsServer, dns_server  # noqa: F401 (the fixture)
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration

CONFIG = """
[validation.auth]
enabled = true
authserv_id = "mx.example.com"

[[validation.content.rules]]
name = "pills"
kind = "regex"
pattern = "che+ap pills?"
where = "subject"
score = 10.0

[validation.decision.domains."example.org"]
ciss = true
"""


def keypair() -> tuple[bytes, str]:
    """A fresh RSA key: (private PEM for dkimpy, the p= of its DNS record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


def mail(sender: str, rcpt: str, subject: str, body: str = "Hello Bob,\r\nsee you.\r\n") -> bytes:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{time.time_ns()}@t>\r\n"
            f"\r\n{body}").encode()


def signed(raw: bytes, domain: str, pem: bytes) -> bytes:
    return dkim.sign(raw, b"sel", domain.encode(), pem, include_headers=[b"from", b"to", b"subject"]) + raw


@pytest.fixture
def filtering_gateway(broker: Broker, sink: Sink, dns_server: DnsServer,  # noqa: F811
                      tmp_path: Path) -> Iterator[Gateway]:
    config = tmp_path / "mailgate.toml"
    config.write_text(CONFIG)
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address, MAILGATE_CONFIG=str(config),
                 **dns_server.env("MAILGATE_VALIDATION__AUTH__DNS__"))
    ensure_topics(gw.settings())  # so that the confirmed sender is in ciss.senders before validation starts
    codec, producer = default_codec(), make_producer(gw.settings(), "test-ciss")
    record = {"mail_id": "", "event_time": int(time.time() * 1000), "node": "test", "sender": "friend@confirmed.test",
              "how": "admin", "expires_time": None}
    producer.produce(TopicNames(gw.prefix)(CISS_SENDERS), key=b"friend@confirmed.test",
                     value=codec.encode("CissSender", record))
    assert producer.flush(10) == 0
    with gw:
        yield gw


def send(gw: Gateway, raw: bytes, sender: str, rcpt: str = "bob@example.com") -> str:
    return asyncio.run(send_mail(gw.smtp_port, raw, sender=sender, recipients=[rcpt])).rsplit(" ", 1)[1]


def routed_by_id(gw: Gateway, ids: set[str], timeout: float = 60.0) -> dict[str, dict]:
    """mail_id → its MailRouted record, from every queue, once all ids are routed."""
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        for queue in ("out", "spam", "quarantine", "ciss"):
            for record in read_topic(gw.settings(), f"{gw.prefix}mail.{queue}"):
                found.setdefault(record.value["mail_id"], record.value)
        if ids <= found.keys():
            return found
        time.sleep(0.5)
    raise AssertionError(f"not routed within {timeout:.0f}s: {ids - found.keys()}:\n{gw.log()}")


def test_authentication_content_rules_and_ciss(filtering_gateway: Gateway, sink: Sink,
                                               dns_server: DnsServer) -> None:  # noqa: F811
    gw, dns = filtering_gateway, dns_server
    (pem_s, pub_s), (pem_l, pub_l) = keypair(), keypair()
    dns.add("sel._domainkey.signed.test", "TXT", f"v=DKIM1; k=rsa; p={pub_s}")
    dns.add("_dmarc.signed.test", "TXT", "v=DMARC1; p=reject")
    dns.add("sel._domainkey.loose.test", "TXT", f"v=DKIM1; k=rsa; p={pub_l}")
    dns.add("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject; adkim=s")

    good = send(gw, signed(mail("alice@signed.test", "bob@example.com", "signed"), "signed.test", pem_s),
                "alice@signed.test")
    tampered_raw = signed(mail("eve@loose.test", "bob@example.com", "tampered"), "loose.test", pem_l)
    tampered = send(gw, tampered_raw.replace(b"see you", b"send money"), "eve@loose.test")
    spoofed = send(gw, signed(mail("ceo@strict.test", "bob@example.com", "wire transfer"), "loose.test", pem_l),
                   "ceo@strict.test")
    pills = send(gw, mail("shop@outside.test", "bob@example.com", "Cheeeap pills"), "shop@outside.test")
    stranger = send(gw, mail("stranger@outside.test", "carol@example.org", "hi carol"), "stranger@outside.test",
                    "carol@example.org")
    friend = send(gw, mail("friend@confirmed.test", "carol@example.org", "hi again"), "friend@confirmed.test",
                  "carol@example.org")

    routed = routed_by_id(gw, {good, tampered, spoofed, pills, stranger, friend})
    assert {k: routed[k]["queue"] for k in routed} == {
        good: "out", tampered: "out", spoofed: "quarantine", pills: "spam", stranger: "ciss", friend: "out"}
    assert routed[spoofed]["reasons"][0].startswith("DMARC: strict.test fails under p=reject")
    assert "dkim=pass (d=loose.test s=sel): signature verified" in routed[spoofed]["reasons"]  # not aligned
    assert routed[pills]["reasons"][0].startswith("spam: ") and "rule pills +10.0" in routed[pills]["reasons"][0]
    assert routed[stranger]["reasons"][0] == "CISS: sender stranger@outside.test is not confirmed"
    assert any(r.startswith("dkim=pass (d=signed.test") for r in routed[good]["reasons"])
    assert any(r.startswith("dkim=fail (d=loose.test") and "body hash" in r for r in routed[tampered]["reasons"])

    delivered = {m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]: m for m in sink.wait_for(3, timeout=60)}
    assert sorted(delivered) == [b"hi again", b"signed", b"tampered"]
    assert delivered[b"signed"].data.startswith(b"Authentication-Results: mx.example.com;\r\n\tdkim=pass")
    assert b"dmarc=pass" in delivered[b"signed"].data.split(b"\r\n\r\n", 1)[0]
    assert b"dkim=fail" in delivered[b"tampered"].data.split(b"\r\n\r\n", 1)[0]
    assert delivered[b"signed"].rcpt_to == ["bob@example.com"]

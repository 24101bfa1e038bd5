"""Each phase-1 filter's accept and reject path, with a real SMTP client, and the
record every decision leaves (MailReceived.verdicts, SmtpRejected)."""

from __future__ import annotations

import subprocess
import threading

import aiosmtplib
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.smtp.conftest import StartServer
from tests.support.ports import free_port
from tests.support.smtp_raw import RawSmtp

MSG = b"Subject: filters\r\n\r\nhello\r\n"

# Sender-specified routing through our own domain (Postfix refuses it: allow_untrusted_routing = no).
ROUTED = ["victim%elsewhere.test@example.com", "elsewhere.test!victim@example.com",
          '"victim@elsewhere.test"@example.com']
# Ways to ask a relay for mail to somewhere else (what an open-relay tester tries).
RELAY_TRICKS = [
    "victim@elsewhere.test",
    "victim@ELSEWHERE.TEST",
    "victim@example.com.elsewhere.test",
    "victim@elsewhere.test.",
    "@example.com:victim@elsewhere.test",  # source route
    "victim@[192.0.2.1]",  # address literal
    "victim%elsewhere.test@[127.0.0.1]",
    "postmaster",  # no domain at all
    *ROUTED,
]


def rcpt_reply(port: int, rcpt: str, helo: str = "client.test", sender: str = "s@outside.test") -> tuple[int, str]:
    with RawSmtp(port) as s:
        s.expect(220)
        s.command(f"EHLO {helo}", 250)
        s.send(f"MAIL FROM:<{sender}>\r\n".encode())
        code, text = s.reply()
        if code != 250:
            return code, text
        s.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        return s.reply()


def swaks(port: int, rcpt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "s@outside.test", "--to", rcpt,
                           "--helo", "client.test"], capture_output=True, text=True, timeout=30, check=False)


def test_no_open_relay(smtp_server: StartServer) -> None:
    srv = smtp_server()
    replies = [rcpt_reply(srv.port, rcpt) for rcpt in RELAY_TRICKS]
    for rcpt, (code, text) in zip(RELAY_TRICKS, replies, strict=True):
        assert code >= 500, f"relayed to {rcpt!r}: {code} {text}"
        if rcpt in ROUTED:  # refused by the relay filter, saying why
            assert code == 550 and text.startswith("5.7.1 ") and "sender-specified routing" in text, (rcpt, text)
    by_filter = sum(1 for code, _ in replies if code == 550)  # the rest: refused as bad syntax (553)
    assert by_filter >= len(RELAY_TRICKS) - 1
    out = swaks(srv.port, "victim@elsewhere.test")
    assert out.returncode != 0 and "<** 550 5.7.1 Relay access denied" in out.stdout
    for rcpt in ROUTED:
        out = swaks(srv.port, rcpt)
        assert out.returncode != 0 and "<** 550 5.7.1 " in out.stdout, out.stdout
        assert "sender-specified routing" in out.stdout, out.stdout
    assert srv.mail_in() == []
    rejected = srv.rejected(expect=by_filter + 1 + len(ROUTED))
    assert len(rejected) == by_filter + 1 + len(ROUTED)
    assert {r.value["verdicts"][-1]["filter"] for r in rejected} == {"relay"}
    assert rejected[-1].value["status"] == "5.7.1" and rejected[-1].value["stage"] == "RCPT"


async def test_trusted_networks_may_relay(smtp_server: StartServer) -> None:
    srv = smtp_server(relay={"trusted_networks": ["127.0.0.0/8"]})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    await client.sendmail("s@outside.test", ["victim@elsewhere.test", "u@example.com"], MSG)
    await client.quit()
    (mail,) = srv.mail_in()
    assert mail.value["rcpt_to"] == ["victim@elsewhere.test", "u@example.com"]
    assert mail.value["verdicts"] == [{"filter": "relay", "stage": "RCPT", "action": "CONTINUE", "code": None,
                                      "status": None, "reason": "relay for trusted network client [127.0.0.1]",
                                      "rcpt": "victim@elsewhere.test"}]


def test_allow_and_deny_lists(smtp_server: StartServer) -> None:
    srv = smtp_server(lists={"sender_deny": ["spammer.test", "bad@outside.test"],
                             "recipient_deny": ["closed@example.com"],
                             "recipient_allow": ["postmaster@example.com"],
                             "sender_allow": ["friend.test"]},
                      rate={"per_client": 1000}, helo={"require_fqdn": True})
    assert rcpt_reply(srv.port, "u@example.com", sender="x@spammer.test")[0] == 550
    assert rcpt_reply(srv.port, "u@example.com", sender="bad@outside.test")[0] == 550
    assert rcpt_reply(srv.port, "u@example.com", sender="good@outside.test")[0] == 250
    code, text = rcpt_reply(srv.port, "closed@example.com")
    assert (code, text) == (550, "5.7.1 <closed@example.com>: Recipient address rejected by policy (closed@example.com)")
    # an allow-listed sender skips the bypassable checks (here: the HELO check)
    assert rcpt_reply(srv.port, "u@example.com", helo="localhost", sender="a@friend.test")[0] == 250
    assert rcpt_reply(srv.port, "u@example.com", helo="localhost")[0] == 504
    reasons = {r.value["reason"] for r in srv.rejected(expect=4)}
    assert reasons >= {"<x@spammer.test>: Sender address rejected by policy: on the global sender deny list "
                       "(spammer.test)",
                       "<bad@outside.test>: Sender address rejected by policy: on the global sender deny list "
                       "(bad@outside.test)"}


def test_rate_limit_per_client_and_per_sender(smtp_server: StartServer) -> None:
    srv = smtp_server(rate={"per_client": 3, "per_sender": 2, "window_s": 60})
    assert [rcpt_reply(srv.port, "u@example.com", sender="one@outside.test")[0] for _ in range(3)] == [250, 250, 450]
    codes = [rcpt_reply(srv.port, "u@example.com", sender=f"s{i}@outside.test")[0] for i in range(2)]
    assert codes == [450, 450]  # the client's budget (3) is spent
    events = [r.value for r in srv.rejected(expect=3)]
    assert {(e["code"], e["status"]) for e in events} == {(450, "4.7.1")}
    assert sorted(e["reason"].split(": ")[1] for e in events) == [
        "at most 2 per 60 s, try again later", "at most 3 per 60 s, try again later",
        "at most 3 per 60 s, try again later"]


def test_helo_sanity(smtp_server: StartServer) -> None:
    srv = smtp_server(helo={"require_fqdn": True})
    assert rcpt_reply(srv.port, "u@example.com", helo="mx.outside.test")[0] == 250
    assert rcpt_reply(srv.port, "u@example.com", helo="[192.0.2.7]")[0] == 250
    assert rcpt_reply(srv.port, "u@example.com", helo="localhost") == (
        504, "5.5.2 <localhost>: Helo command rejected: Need fully-qualified hostname")
    assert rcpt_reply(srv.port, "u@example.com", helo="192.0.2.7")[0] == 501
    assert rcpt_reply(srv.port, "u@example.com", helo="bad_name!.test")[0] == 501
    assert rcpt_reply(srv.port, "u@example.com", helo="example.com")[1].endswith("that is my name, not yours")


class Callee:
    """The internal mail server a callout asks: knows alice and bob; 'flaky' gets a 451."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        with self.lock:
            self.asked.append(address)
        if address.startswith("flaky@"):
            return "451 4.3.0 try later"
        if address.split("@")[0] in ("alice", "bob"):
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        return "550 5.1.1 User unknown"


def test_recipient_verification_static_and_callout_with_cache(smtp_server: StartServer) -> None:
    callee = Callee()
    controller = Controller(callee, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        srv = smtp_server(recipients={"addresses": ["alice@example.org", "bob@example.org"],
                                      "callout": f"127.0.0.1:{controller.port}"})
        assert rcpt_reply(srv.port, "alice@example.org")[0] == 250  # static list
        assert rcpt_reply(srv.port, "carol@example.org")[:1] == (550,)
        assert callee.asked == []  # the static list decided
        assert rcpt_reply(srv.port, "alice@example.com")[0] == 250  # callout
        assert rcpt_reply(srv.port, "alice@example.com")[0] == 250  # cached
        code, text = rcpt_reply(srv.port, "nobody@example.com")
        assert code == 550 and text.startswith("5.1.1 <nobody@example.com>: Recipient address rejected")
        assert rcpt_reply(srv.port, "nobody@example.com")[0] == 550  # cached
        assert rcpt_reply(srv.port, "flaky@example.com")[0] == 451
        assert rcpt_reply(srv.port, "flaky@example.com")[0] == 451  # not cached
        assert callee.asked == ["alice@example.com", "nobody@example.com", "flaky@example.com", "flaky@example.com"]
    finally:
        controller.stop()
    assert rcpt_reply(srv.port, "bob@example.com")[0] == 451  # the internal server is gone: try later

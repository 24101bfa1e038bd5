"""SMTP smuggling (CVE-2023-51764 class; aiosmtpd CVE-2024-27305) and STARTTLS command
injection (CVE-2024-34083 class) against smtp-server, with raw sockets: neither
may ever produce a second mail or a reply to an injected command."""

from __future__ import annotations

import ssl

import pytest

from tests.integration.smtp.conftest import StartServer
from tests.support.smtp_raw import RawSmtp

HEAD = b"From: a@outside.test\r\nTo: b@example.com\r\nSubject: first\r\n\r\nhello\r\n"
SMUGGLED = b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"

# End-of-data sequences other than <CR><LF>.<CR><LF> that some MTA honours.
FAKE_ENDS = [
    b"\n.\r\n",  # <LF>.<CR><LF>
    b"\r\n.\n",  # <CR><LF>.<LF>
    b"\n.\n",  # <LF>.<LF>
    b"\r.\r\n",  # <CR>.<CR><LF>
    b"\r\n.\r",  # <CR><LF>.<CR>
    b"\r.\r",  # <CR>.<CR>
]


def _open(port: int) -> RawSmtp:
    s = RawSmtp(port)
    s.expect(220)
    s.command("EHLO attacker.test", 250)
    s.command("MAIL FROM:<a@outside.test>", 250)
    s.command("RCPT TO:<b@example.com>", 250)
    s.command("DATA", 354)
    return s


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=[repr(e) for e in FAKE_ENDS])
def test_smuggling_is_refused_and_nothing_is_published(smtp_server: StartServer, fake_end: bytes) -> None:
    srv = smtp_server()
    with _open(srv.port) as s:
        s.send(HEAD + fake_end + SMUGGLED + b"\r\n.\r\n")
        code, text = s.reply()
        assert code == 521 and "5.5.2" in text, (code, text)
        assert s.closed()
    with _open(srv.port) as s:  # the server still works, and a clean mail gets through
        s.send(HEAD + b"\r\n.\r\n")
        s.expect(250)
        s.command("QUIT", 221)
    mails = srv.mail_in()
    assert len(mails) == 1 and mails[0].value["mail_from"] == "a@outside.test"
    assert b"evil" not in mails[0].value["message"]["data"]
    rejected = [r.value for r in srv.rejected(expect=1)]
    assert len(rejected) == 1 and rejected[0]["code"] == 521 and rejected[0]["mail_from"] == "a@outside.test"
    assert "bare <" in rejected[0]["reason"] and rejected[0]["verdicts"][-1]["filter"] == "limits"


@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "two-packets"])
def test_starttls_injection_is_discarded(smtp_server: StartServer, split: bool) -> None:
    srv = smtp_server()
    injected = b"MAIL FROM:<injected@outside.test>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n"
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO attacker.test", 250)
        # Commands pipelined after STARTTLS in the clear must die with the clear stream.
        if split:
            s.send(b"STARTTLS\r\n")
            s.send(injected)
        else:
            s.send(b"STARTTLS\r\n" + injected)
        s.expect(220)
        try:
            s.starttls()
        except (ssl.SSLError, OSError):
            assert split  # the injected bytes reached the handshake as garbage: it failed, nothing ran
            assert srv.mail_in() == []
            return
        assert s.silent(0.7), "the server answered commands that were injected before the TLS handshake"
        s.command("NOOP", 250)
        s.command("EHLO attacker.test", 250)
        s.send(b"RCPT TO:<b@example.com>\r\n")
        assert s.reply()[0] == 503, "the injected MAIL FROM survived the TLS handshake"
        assert s.silent(0.3)
    assert srv.mail_in() == []

"""PIPELINING against smtp-server (RFC 2920): MAIL, RCPT and DATA sent as one group are
served, and a client that sends the message before the 354 is refused with Postfix's
reply (smtpd_forbid_unauth_pipelining) and let go, with nothing published."""

from __future__ import annotations

import subprocess

from tests.integration.smtp.conftest import StartServer
from tests.support.smtp_raw import RawSmtp

GROUP = b"MAIL FROM:<a@outside.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
MESSAGE = b"From: a@outside.test\r\nTo: b@example.com\r\nSubject: eager\r\n\r\nhello\r\n.\r\n"


def test_the_message_before_the_354_is_refused(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO eager.test", 250)
        s.send(GROUP + MESSAGE)  # all in one write: the client never waited for the 354
        assert [s.reply()[0], s.reply()[0]] == [250, 250]
        code, text = s.reply()
        assert code == 554 and text.startswith("5.5.0 ") and "SMTP protocol synchronization" in text
        assert s.closed()
    assert srv.mail_in() == []
    (rejected,) = [r.value for r in srv.rejected(expect=1)]
    assert rejected["code"] == 554 and "synchronization" in rejected["reason"]


def test_a_pipelined_group_ending_in_data_is_served(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO patient.test", 250)
        s.send(GROUP)
        assert [s.reply()[0], s.reply()[0], s.reply()[0]] == [250, 250, 354]
        s.send(MESSAGE)
        s.expect(250)
        s.command("QUIT", 221)
    assert len(srv.mail_in()) == 1


def test_swaks_pipelining_delivers(smtp_server: StartServer) -> None:
    srv = smtp_server()
    run = subprocess.run(["swaks", "--server", f"127.0.0.1:{srv.port}", "--from", "a@outside.test",
                          "--to", "b@example.com", "--pipeline", "--h-Subject", "pipelined"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    # swaks sent MAIL, RCPT and DATA before reading their replies.
    assert "MAIL FROM:<a@outside.test>\n -> RCPT TO:<b@example.com>\n -> DATA" in run.stdout, run.stdout
    mails = srv.mail_in()
    assert len(mails) == 1 and b"Subject: pipelined" in mails[0].value["message"]["data"]


def test_smtp_source_is_served(smtp_server: StartServer) -> None:
    """Postfix's load generator (the benches' client) waits for the 354 as it must."""
    srv = smtp_server()
    run = subprocess.run(["smtp-source", "-s", "2", "-m", "4", "-l", "2000", "-f", "a@outside.test",
                          "-t", "b@example.com", f"127.0.0.1:{srv.port}"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and not run.stderr, run.stdout + run.stderr
    assert len(srv.mail_in()) == 4

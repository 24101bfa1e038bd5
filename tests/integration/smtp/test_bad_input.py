"""Bad input against smtp-server: every case gets a clear SMTP error or a closed
connection — never a crash, a leaked connection slot, or a partial mail published."""

from __future__ import annotations

import socket
import time

from tests.integration.smtp.conftest import StartServer
from tests.support.smtp_raw import RawSmtp
from tests.support.smtp_server import SmtpServer

MAIL = b"Subject: ok\r\n\r\nbody\r\n.\r\n"


def _still_serves(srv: SmtpServer) -> None:
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO ok.test", 250)
        s.command("MAIL FROM:<a@outside.test>", 250)
        s.command("RCPT TO:<b@example.com>", 250)
        s.command("DATA", 354)
        s.send(MAIL)
        s.expect(250)
        s.command("QUIT", 221)


def test_garbage_commands_get_errors_then_the_door(smtp_server: StartServer) -> None:
    srv = smtp_server(limits={"max_errors": 5})
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.send(b"\xff\xfe\x80garbage\r\n")
        assert s.reply()[0] == 500
        s.send(b"MAIL FROM:<a@outside.test>\r\n")  # before EHLO
        code, text = s.reply()
        assert code == 503 and text.startswith("5.5.1 ")
        s.send(b"HELO\r\n")  # no name
        code, text = s.reply()
        assert code == 501 and text.startswith("5.5.4 ")
        s.send(b"RCPT TO:<b@example.com>\r\nDATA\r\n")
        assert [s.reply()[0], s.reply()[0]] == [503, 503]
        code, text = s.reply()  # the 5th error closes the session
        assert code == 421 and "too many errors" in text
        assert s.closed()
    _still_serves(srv)


def test_a_10_mb_line_gets_500_and_the_session_goes_on(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.send(b"EHLO " + b"x" * 10_000_000 + b"\r\n")  # RFC 5321 4.5.3.1.4: 500, not a closed door
        code, text = s.reply()
        assert code == 500 and text == "5.5.2 Error: line longer than 4096 octets"
        s.command("EHLO ok.test", 250)
        s.command("MAIL FROM:<a@outside.test>", 250)
        s.command("RCPT TO:<b@example.com>", 250)
        s.command("DATA", 354)
        s.send(b"Subject: long\r\n\r\n" + b"y" * 5000 + b"\r\nmore\r\n.\r\n")  # inside DATA: 500 after the end
        code, text = s.reply()
        assert code == 500 and "message line longer than 4096 octets" in text and text.startswith("5.5.2 ")
        s.command("MAIL FROM:<a@outside.test>", 250)  # the transaction failed; the session did not
        s.command("RCPT TO:<b@example.com>", 250)
        s.command("DATA", 354)
        s.send(MAIL)
        s.expect(250)
        s.command("QUIT", 221)
    _still_serves(srv)
    mails = srv.mail_in()
    assert len(mails) == 2 and not any(b"yyyy" in m.value["message"]["data"] for m in mails)


def test_nul_bytes_end_the_session(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.send(b"EHLO nul\x00.test\r\n")
        code, text = s.reply()
        assert code == 521 and "NUL" in text
        assert s.closed()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        for line, code in (("EHLO ok.test", 250), ("MAIL FROM:<a@outside.test>", 250),
                           ("RCPT TO:<b@example.com>", 250), ("DATA", 354)):
            s.command(line, code)
        s.send(b"Subject: nul\r\n\r\nbin\x00ary\r\n.\r\n")
        assert s.reply()[0] == 521 and s.closed()
    assert srv.mail_in() == []


def test_idle_and_half_open_connections_are_closed_and_do_not_leak(smtp_server: StartServer) -> None:
    srv = smtp_server(limits={"idle_timeout_s": 1.0, "max_connections_per_ip": 3})
    time.sleep(0.3)  # the start-up probe's connection is let go
    began = time.monotonic()
    silent = [RawSmtp(srv.port) for _ in range(3)]
    for s in silent:
        s.expect(220)
    with RawSmtp(srv.port) as fourth:  # over the per-IP limit
        code, text = fourth.reply()
        assert code == 421 and "Too many connections from [127.0.0.1]" in text
        assert fourth.closed()
    silent[1].sock.shutdown(socket.SHUT_WR)  # half-open: we will never send again
    assert silent[1].closed(1.0)
    for s in (silent[0], silent[2]):
        code, text = s.reply()
        assert (code, text) == (421, "4.4.2 mailgate.localdomain Error: timeout exceeded; closing connection")
        assert s.closed()
    for s in silent:
        s.close()
    assert time.monotonic() - began < 5
    time.sleep(0.2)
    _still_serves(srv)  # the slots were given back
    _still_serves(srv)


def test_a_client_that_vanishes_mid_data_publishes_nothing(smtp_server: StartServer) -> None:
    srv = smtp_server()
    for how in ("close", "reset"):
        s = RawSmtp(srv.port)
        s.expect(220)
        for line, code in (("EHLO ok.test", 250), ("MAIL FROM:<a@outside.test>", 250),
                           ("RCPT TO:<b@example.com>", 250), ("DATA", 354)):
            s.command(line, code)
        s.send(b"Subject: half\r\n\r\n" + b"part of a mail\r\n" * 1000)
        if how == "reset":
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    time.sleep(0.3)
    _still_serves(srv)
    mails = srv.mail_in()
    assert len(mails) == 1 and b"part of a mail" not in mails[0].value["message"]["data"]


def test_ten_thousand_rcpt_commands(smtp_server: StartServer) -> None:
    srv = smtp_server(max_recipients=50, limits={"max_errors": 20})
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO ok.test", 250)
        s.command("MAIL FROM:<a@outside.test>", 250)
        try:
            s.send(b"".join(b"RCPT TO:<u%d@example.com>\r\n" % i for i in range(10_000)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        codes = []
        while (reply := s.reply())[0]:
            codes.append(reply)
        assert [c for c, _ in codes[:50]] == [250] * 50
        assert codes[50] == (452, "4.5.3 Too many recipients in this message; send the rest in another")
        assert {c for c, _ in codes[51:]} <= {452, 421} and len(codes) <= 50 + 20 + 1  # the rest may die in a RST
    (event,) = [r.value for r in srv.rejected(expect=1)]
    assert (event["code"], event["reason"]) == (421, "mailgate.localdomain Error: too many errors; closing connection")
    assert len(event["rcpt_to"]) == 50 and [v["code"] for v in event["verdicts"]] == [452] * 20 + [421]
    _still_serves(srv)


def test_too_many_commands_in_one_session(smtp_server: StartServer) -> None:
    srv = smtp_server(limits={"max_commands": 10})
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.send(b"NOOP\r\n" * 12)
        codes = [s.reply()[0] for _ in range(11)]
        assert codes == [250] * 10 + [421]
        assert s.closed()


def test_oversized_mail_is_refused_and_not_published(smtp_server: StartServer) -> None:
    srv = smtp_server(max_message_size=10_000)
    with RawSmtp(srv.port) as s:
        s.expect(220)
        assert "SIZE 10000" in s.command("EHLO ok.test", 250)
        assert s.command("MAIL FROM:<a@outside.test> SIZE=20000", 552).startswith("5.3.4 ")
        s.command("MAIL FROM:<a@outside.test>", 250)
        s.command("RCPT TO:<b@example.com>", 250)
        s.command("DATA", 354)
        s.send(b"Subject: big\r\n\r\n" + (b"z" * 70 + b"\r\n") * 200 + b".\r\n")
        assert s.expect(552).startswith("5.3.4 ")
        s.command("QUIT", 221)
    assert srv.mail_in() == []

"""8BITMIME and SMTPUTF8 with real clients (aiosmtplib, raw sockets): an 8-bit body
reaches mail.in byte for byte; a UTF-8 address is taken only in a transaction that
declared SMTPUTF8 (else 553 5.6.7, RFC 6531 3.5); bad MAIL parameters get 501/555."""

from __future__ import annotations

import aiosmtplib
import pytest

from schemas import unpack_message
from tests.integration.smtp.conftest import StartServer
from tests.support.smtp_raw import RawSmtp

# Every octet 0x80-0xFF (Latin-1 and UTF-8 mixed, as real 8-bit mail is), a line that
# needs dot-stuffing, and long enough to be compressed on the topic.
BODY_8BIT = (b"From: j\xc3\xb6rg@outside.test\r\nTo: u@example.com\r\nSubject: 8bit\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\n"
             b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, \xe7\x94\xa8\xe6\x88\xb7 \xf0\x9f\x93\xa7\r\n"
             b".a line that begins with a dot\r\n"
             + b"".join(bytes(range(lo, lo + 16)) + b"\r\n" for lo in range(0x80, 0x100, 16)) * 40)


def client(port: int) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="client.test")


async def test_8bit_body_reaches_mail_in_unchanged(smtp_server: StartServer) -> None:
    srv = smtp_server()
    smtp = client(srv.port)
    await smtp.connect()
    await smtp.ehlo()
    assert smtp.supports_extension("8bitmime")
    assert (await smtp.mail("s@outside.test", options=["BODY=8BITMIME"])).code == 250
    assert (await smtp.rcpt("u@example.com")).code == 250
    assert (await smtp.data(BODY_8BIT)).code == 250
    await smtp.quit()
    with RawSmtp(srv.port) as s:  # by hand: lower-case value, and 8-bit data without BODY= (taken, as Postfix)
        s.expect(220)
        s.command("EHLO client.test", 250)
        s.command("MAIL FROM:<s2@outside.test> body=8bitmime", 250)
        s.command("RCPT TO:<u@example.com>", 250)
        s.command("DATA", 354)
        s.send(BODY_8BIT.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        s.expect(250)
    mails = sorted(srv.mail_in(), key=lambda m: m.value["mail_from"])
    assert [m.value["mail_from"] for m in mails] == ["s2@outside.test", "s@outside.test"]
    for mail in mails:
        assert unpack_message(mail.value["message"]) == BODY_8BIT
        assert mail.value["size"] == len(BODY_8BIT)


async def test_utf8_addresses_with_smtputf8(smtp_server: StartServer) -> None:
    srv = smtp_server()
    message = "From: jörg@exämple.test\r\nTo: 用户@example.com\r\nSubject: ü\r\n\r\nhallo\r\n".encode()
    smtp = client(srv.port)
    await smtp.connect()
    await smtp.ehlo()
    assert smtp.supports_extension("smtputf8")
    # sendmail adds SMTPUTF8 itself for these addresses; say it anyway, as the issue asks
    errors, reply = await smtp.sendmail("jörg@exämple.test", ["用户@example.com", "ascii@example.com"], message,
                                        mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert errors == {} and reply.startswith("2.0.0 Ok: queued as")
    await smtp.quit()
    (mail,) = srv.mail_in()
    assert mail.value["mail_from"] == "jörg@exämple.test"
    assert mail.value["rcpt_to"] == ["用户@example.com", "ascii@example.com"]
    assert unpack_message(mail.value["message"]) == message


async def test_utf8_address_without_smtputf8_is_refused(smtp_server: StartServer) -> None:
    srv = smtp_server()
    smtp = client(srv.port)
    await smtp.connect()
    await smtp.ehlo()
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as sender:
        await smtp.mail("jörg@exämple.test", encoding="utf-8")  # UTF-8 on the wire, no SMTPUTF8
    assert sender.value.code == 553 and sender.value.message.startswith("5.6.7 ")
    assert "SMTPUTF8" in sender.value.message
    await smtp.rset()
    assert (await smtp.mail("s@outside.test")).code == 250
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as rcpt:
        await smtp.rcpt("用户@example.com", encoding="utf-8")
    assert rcpt.value.code == 553 and rcpt.value.message.startswith("5.6.7 ")
    assert (await smtp.rcpt("u@example.com")).code == 250  # the transaction goes on
    await smtp.quit()
    with RawSmtp(srv.port) as s:  # Latin-1 bytes are no UTF-8: malformed, even with SMTPUTF8
        s.expect(220)
        s.command("EHLO client.test", 250)
        s.send(b"MAIL FROM:<j\xf6rg@outside.test> SMTPUTF8\r\n")
        code, text = s.reply()
        assert (code, text[:6]) == (553, "5.1.7 ") and "not valid UTF-8" in text


BAD_PARAMS = [
    ("BODY=BINARYMIME", 501),  # needs CHUNKING, which we do not offer
    ("BODY=9BIT", 501),
    ("BODY", 501),
    ("BODY=", 501),
    ("SMTPUTF8=yes", 501),
    ("SIZE=big", 501),
    ("FOO=1", 555),
]


def test_bad_mail_parameters(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO client.test", 250)
        for params, code in BAD_PARAMS:
            s.send(f"MAIL FROM:<s@outside.test> {params}\r\n".encode())
            got, text = s.reply()
            assert (got, text[:2], text[5:6]) == (code, "5.", " "), (params, got, text)
        s.command("MAIL FROM:<s@outside.test> BODY=8BITMIME SMTPUTF8 SIZE=100", 250)


def test_mail_parameters_need_ehlo(smtp_server: StartServer) -> None:
    """After HELO no extension is in effect: SMTPUTF8, BODY= and SIZE= get 555; plain MAIL works."""
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("HELO client.test", 250)
        for params in ("SMTPUTF8", "BODY=8BITMIME", "SIZE=100"):
            s.send(f"MAIL FROM:<s@outside.test> {params}\r\n".encode())
            got, text = s.reply()
            assert (got, text[:5]) == (555, "5.5.4") and "EHLO" in text, (params, got, text)
        s.command("MAIL FROM:<s@outside.test>", 250)
        s.command("RCPT TO:<u@example.com>", 250)
        s.command("RSET", 250)
        s.command("EHLO client.test", 250)
        s.command("MAIL FROM:<s@outside.test> SMTPUTF8", 250)

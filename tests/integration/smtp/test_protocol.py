"""What smtp-server offers, with real clients: the ESMTP extensions, STARTTLS with
the generated certificate, the implicit-TLS port, AUTH only over TLS, 250 only
after Kafka's ack (the event carries TLS, AUTH and the verdicts)."""

from __future__ import annotations

import re
import ssl
import subprocess

import aiosmtplib
import pytest

from ingress.smtp.auth import hash_password
from tests.integration.smtp.conftest import StartServer
from tests.support.ports import free_port
from tests.support.smtp_raw import RawSmtp

MSG = b"From: a@outside.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def test_ehlo_offers_the_extensions_and_replies_carry_status_codes(smtp_server: StartServer) -> None:
    srv = smtp_server(max_message_size=1_000_000)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    reply = await client.ehlo()
    assert reply.code == 250
    for ext in ("size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
        assert client.supports_extension(ext), ext
    assert client.esmtp_extensions["size"] == "1000000" and not client.supports_extension("auth")
    assert (await client.noop()).message.startswith("2.0.0 ")
    assert (await client.rset()).message.startswith("2.0.0 ")
    resp, _ = await client.sendmail("sender@outside.test", ["rcpt@example.com"], MSG)
    assert resp == {}
    await client.quit()


async def test_starttls_with_the_generated_certificate(smtp_server: StartServer) -> None:
    srv = smtp_server()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=True, tls_context=_no_verify(),
                             local_hostname="client.test")
    await client.connect()
    await client.sendmail("sender@outside.test", ["rcpt@example.com"], MSG)
    await client.quit()
    (mail,) = srv.mail_in()
    assert mail.value["tls"] is not None and mail.value["tls"].startswith("TLSv1.")
    cert = (srv.settings.home / "tls" / "mailgate.localdomain.crt").read_text()
    assert "BEGIN CERTIFICATE" in cert


async def test_implicit_tls_port(smtp_server: StartServer) -> None:
    srv = smtp_server(tls={"port": free_port()})
    assert srv.tls_port is not None
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.tls_port, use_tls=True, tls_context=_no_verify(),
                             local_hostname="client.test")
    await client.connect()
    await client.ehlo()
    assert not client.supports_extension("starttls")  # already TLS
    await client.sendmail("sender@outside.test", ["rcpt@example.com"], MSG)
    await client.quit()
    (mail,) = srv.mail_in()
    assert mail.value["tls"].startswith("TLSv1.")


def test_swaks_over_starttls_and_implicit_tls(smtp_server: StartServer) -> None:
    srv = smtp_server(tls={"port": free_port()})
    for flags in (["--tls"], ["--tlsc", "--port", str(srv.tls_port)]):
        port = [] if "--port" in flags else ["--port", str(srv.port)]
        out = subprocess.run(["swaks", "--server", "127.0.0.1", *port, *flags, "--from", "s@outside.test",
                              "--to", "r@example.com", "--helo", "swaks.test"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as", out.stdout), out.stdout
    assert len(srv.mail_in()) == 2


async def test_auth_only_over_tls_and_then_relaying_is_allowed(smtp_server: StartServer) -> None:
    srv = smtp_server(auth={"users": {"alice": "plain-secret", "bob": hash_password("hashed-secret", 1000)}})
    clear = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
    await clear.connect()
    await clear.ehlo()
    assert not clear.supports_extension("auth")
    refused = await clear.execute_command(b"AUTH", b"PLAIN", b"AGFsaWNlAHBsYWluLXNlY3JldA==")
    assert refused.code == 538 and refused.message.startswith("5.7.11 ")
    await clear.quit()

    for user, password in (("alice", "plain-secret"), ("bob", "hashed-secret")):
        tls = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=True, tls_context=_no_verify(),
                              local_hostname="client.test")
        await tls.connect()
        await tls.ehlo()
        assert tls.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await tls.login(user, "wrong")
        await tls.login(user, password)
        await tls.sendmail(f"{user}@example.com", ["someone@elsewhere.test"], MSG)  # relay: authenticated
        await tls.quit()
    mails = sorted((m.value for m in srv.mail_in()), key=lambda v: v["authenticated"])
    assert [m["authenticated"] for m in mails] == ["alice", "bob"]
    assert mails[0]["verdicts"][0]["reason"] == "relay for authenticated user alice"


def test_no_auth_when_none_is_configured(smtp_server: StartServer) -> None:
    srv = smtp_server()
    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO c.test", 250)
        s.command("STARTTLS", 220)
        s.starttls()
        assert "AUTH" not in s.command("EHLO c.test", 250)
        s.command("AUTH PLAIN AGFsaWNlAHg=", 502)



def test_auth_login_and_cancel_by_hand(smtp_server: StartServer) -> None:
    import base64

    srv = smtp_server(auth={"users": {"carol": "pw-of-carol"}})

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    with RawSmtp(srv.port) as s:
        s.expect(220)
        s.command("EHLO c.test", 250)
        s.command("AUTH LOGIN", 538)
        s.command("STARTTLS", 220)
        s.starttls()
        assert "AUTH PLAIN LOGIN" in s.command("EHLO c.test", 250)
        s.command("AUTH LOGIN", 334)
        s.command("*", 501)  # the client gave up
        assert s.command("AUTH LOGIN", 334) == "VXNlcm5hbWU6"
        assert s.command(b64("carol"), 334) == "UGFzc3dvcmQ6"
        s.command(b64("wrong"), 535)
        s.command("AUTH PLAIN !!notbase64", 501)
        s.command(f"AUTH PLAIN {b64(chr(0) + 'carol' + chr(0) + 'pw-of-carol')}", 235)
        s.command("AUTH PLAIN x", 503)
        s.command("MAIL FROM:<carol@example.com>", 250)
        s.command("RCPT TO:<friend@elsewhere.test>", 250)  # relaying for an authenticated user


async def test_a_retry_of_an_accepted_mail_is_answered_250_and_stored_once(smtp_server: StartServer) -> None:
    """A sender that lost our 250 sends the mail again: same client, envelope, Message-ID and body."""
    srv = smtp_server()
    raw = b"From: a@outside.test\r\nTo: b@example.com\r\nMessage-ID: <retry-1@outside.test>\r\nSubject: hi\r\n\r\nhello\r\n"
    replies = []
    for body in (raw, raw, raw.replace(b"hello", b"hello again")):
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
        await client.connect()
        _, message = await client.sendmail("sender@outside.test", ["rcpt@example.com"], body)
        replies.append(message)
        await client.quit()
    first_id = re.search(r"queued as (\S+)", replies[0]).group(1)  # type: ignore[union-attr]
    assert re.search(r"queued as (\S+)", replies[1]).group(1) == first_id  # type: ignore[union-attr]
    assert "already accepted" in replies[1] and "already accepted" not in replies[2]
    ids = [m.value["mail_id"] for m in srv.mail_in()]
    assert len(ids) == 2 and ids.count(first_id) == 1  # the retry was not stored; the changed body was

"""Sender allow/deny lists per recipient domain and per recipient user, with real
clients: the most specific list decides for each recipient at RCPT (user > domain >
global), the reply names the list, and the verdicts are recorded in MailReceived and
SmtpRejected."""

from __future__ import annotations

import subprocess

import aiosmtplib

from tests.integration.smtp.conftest import StartServer
from tests.integration.smtp.test_filters import MSG, rcpt_reply

LISTS = {
    "sender_deny": ["global-bad.test"],
    "domains": {"example.com": {"sender_deny": ["spammer.test"]},
                "other.org": {"sender_allow": ["global-bad.test"]}},
    "users": {"alice@example.com": {"sender_allow": ["partner.test", "spammer.test"]}},
}


async def test_domain_deny_user_allow_other_domain_unaffected(smtp_server: StartServer) -> None:
    srv = smtp_server(domains=["example.com", "other.org"], lists=LISTS)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    errors, _ = await client.sendmail("x@spammer.test", ["carol@example.com", "alice@example.com", "dave@other.org"],
                                      MSG)
    await client.quit()
    assert set(errors) == {"carol@example.com"}  # example.com denies spammer.test ...
    code, text = errors["carol@example.com"]
    assert (code, text) == (550, "5.7.1 <x@spammer.test>: Sender address rejected by policy: on the sender deny "
                                 "list of domain example.com (spammer.test)")
    (mail,) = srv.mail_in()  # ... alice allows it herself; other.org has no word against it
    assert mail.value["rcpt_to"] == ["alice@example.com", "dave@other.org"]
    verdicts = [(v["filter"], v["action"], v["rcpt"], v["reason"]) for v in mail.value["verdicts"]]
    assert verdicts == [
        ("lists", "REJECT", "carol@example.com", text.removeprefix("5.7.1 ")),
        ("lists", "ACCEPT", "alice@example.com", "sender on the sender allow list of user alice@example.com "
                                                 "(spammer.test)"),
    ]


def test_global_deny_is_overridden_only_where_an_owner_allows(smtp_server: StartServer) -> None:
    srv = smtp_server(domains=["example.com", "other.org"], lists=LISTS)
    assert rcpt_reply(srv.port, "dave@other.org", sender="x@global-bad.test")[0] == 250  # other.org allows it
    code, text = rcpt_reply(srv.port, "carol@example.com", sender="x@global-bad.test")
    assert (code, text) == (550, "5.7.1 <x@global-bad.test>: Sender address rejected by policy: on the global "
                                 "sender deny list (global-bad.test)")
    assert rcpt_reply(srv.port, "carol@example.com", sender="x@partner.test")[0] == 250  # nobody lists it
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{srv.port}", "--from", "y@spammer.test",
                          "--to", "bob@example.com", "--helo", "client.test"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0 and "<** 550 5.7.1 <y@spammer.test>: Sender address rejected by policy: on the " \
                                   "sender deny list of domain example.com (spammer.test)" in out.stdout, out.stdout
    rejected = srv.rejected(expect=2)
    assert [(r.value["stage"], r.value["rcpt_to"], r.value["reason"].split(": on the ")[1]) for r in rejected] == [
        ("RCPT", [], "global sender deny list (global-bad.test)"),
        ("RCPT", [], "sender deny list of domain example.com (spammer.test)"),
    ]
    put_off = rejected[0].value["verdicts"][0]  # the MAIL verdict that put the global deny off, recorded
    assert put_off["stage"] == "MAIL" and "decided per recipient" in put_off["reason"]

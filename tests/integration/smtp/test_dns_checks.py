"""rDNS, DNSBL and SPF against a real DNS server on loopback that the test controls
(tests/support/dns.py); the resolver address comes from the settings."""

from __future__ import annotations

import aiosmtplib
import pytest

from tests.integration.smtp.conftest import StartServer
from tests.integration.smtp.test_filters import MSG, rcpt_reply
from tests.support.dns import DnsServer

REVERSE = "1.0.0.127.in-addr.arpa"


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    dns_server.reset()
    return dns_server


def test_reverse_dns_present_and_confirmed(smtp_server: StartServer, dns: DnsServer) -> None:
    present = smtp_server(checks={"rdns": "present"}, dns=dns.settings())
    confirmed = smtp_server(checks={"rdns": "confirmed"}, dns=dns.settings())
    code, text = rcpt_reply(present.port, "u@example.com")
    assert (code, text) == (550, "5.7.25 Client host [127.0.0.1] has no reverse DNS (PTR) name")
    dns.fail(REVERSE)
    assert rcpt_reply(present.port, "u@example.com")[:1] == (450,)  # the DNS failed: try later
    dns.reset()
    dns.add_ptr("127.0.0.1", "mx.client.test")
    assert rcpt_reply(present.port, "u@example.com")[0] == 250
    code, text = rcpt_reply(confirmed.port, "u@example.com")
    assert code == 550 and "does not resolve back to it" in text
    dns.add("mx.client.test", "A", "127.0.0.1")
    assert rcpt_reply(confirmed.port, "u@example.com")[0] == 250
    assert ("1.0.0.127.in-addr.arpa", "PTR") in dns.queries and ("mx.client.test", "A") in dns.queries


async def test_dnsbl(smtp_server: StartServer, dns: DnsServer) -> None:
    srv = smtp_server(checks={"dnsbl_zones": ["dead.test", "bl.test"]}, dns=dns.settings(timeout_s=1.0))
    dns.fail("1.0.0.127.dead.test")  # one list does not answer: it is skipped
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    await client.sendmail("s@outside.test", ["u@example.com"], MSG)  # not listed
    await client.quit()
    (mail,) = srv.mail_in()
    assert mail.value["verdicts"][0]["filter"] == "dnsbl" and "dead.test" in mail.value["verdicts"][0]["reason"]
    dns.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    dns.add("1.0.0.127.bl.test", "TXT", "Listed: see https://bl.test/127.0.0.1")
    code, text = rcpt_reply(srv.port, "u@example.com")
    assert code == 554 and text == ("5.7.1 Service unavailable; client host [127.0.0.1] blocked using bl.test: "
                                    "Listed: see https://bl.test/127.0.0.1")
    (event,) = [r.value for r in srv.rejected(expect=1)]
    assert event["verdicts"][-1]["filter"] == "dnsbl" and event["stage"] == "MAIL"


async def test_spf_is_recorded_and_enforced(smtp_server: StartServer, dns: DnsServer) -> None:
    dns.add("pass.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    dns.add("fail.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.fail("temp.test")
    record = smtp_server(checks={"spf": "record"}, dns=dns.settings(timeout_s=1.0))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=record.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    for sender in ("a@pass.test", "a@fail.test", "a@none.test"):
        await client.sendmail(sender, ["u@example.com"], MSG)
    await client.quit()
    spf = {m.value["mail_from"]: (m.value["spf"], m.value["spf_explanation"]) for m in record.mail_in()}
    assert {k: v[0] for k, v in spf.items()} == {"a@pass.test": "pass", "a@fail.test": "fail", "a@none.test": "none"}

    enforce = smtp_server(checks={"spf": "enforce"}, dns=dns.settings(timeout_s=1.0))
    assert rcpt_reply(enforce.port, "u@example.com", sender="a@pass.test")[0] == 250
    code, text = rcpt_reply(enforce.port, "u@example.com", sender="a@fail.test")
    assert code == 550 and text.startswith("5.7.23 SPF of fail.test does not allow [127.0.0.1]")
    code, text = rcpt_reply(enforce.port, "u@example.com", sender="a@temp.test")
    assert code == 451 and text.startswith("4.7.24 ")

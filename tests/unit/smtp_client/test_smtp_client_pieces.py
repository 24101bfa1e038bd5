"""smtp-client's pure pieces: settings, routing decisions, retry schedule, DSN building."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from typing import Any

import dns.resolver
import pytest
from pydantic import ValidationError

from core.settings import parse_hostport
from egress.smtp_client.settings import SmtpClientSettings
from egress.smtp_client.bounce import bounce_mail_id, bounce_record, build_dsn, status_code
from egress.smtp_client.delivery import Reply
from egress.smtp_client.retry import DueGate, expired, retry_delay_s, retry_record, retry_topic
from egress.smtp_client.routing import Host, RouteError, Router
from schemas import default_codec, unpack_message
from schemas.ids import mail_id_time_ms


def test_settings_parse_maps_and_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = SmtpClientSettings(transport="A.test=10.0.0.5:2525, b.test=mx", tls_policy="bank.test=required",
                           retry_delays_s="1,2,3")  # type: ignore[arg-type]
    assert s.transport == {"a.test": "10.0.0.5:2525", "b.test": "mx"}
    assert s.tls_for("BANK.test") == "required" and s.tls_for("other.test") == "may"
    assert s.retry_delays_s == [1.0, 2.0, 3.0]
    with pytest.raises(ValidationError, match="3 positive delays"):
        SmtpClientSettings(retry_delays_s=[1, 2])
    with pytest.raises(ValidationError):
        SmtpClientSettings(tls_policy={"x.test": "sometimes"})  # type: ignore[dict-item]
    assert parse_hostport("[::1]:2600", 25) == ("::1", 2600) and parse_hostport("mx.test", 25) == ("mx.test", 25)


class FakeResolver:
    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers

    async def resolve(self, name: str, rtype: str) -> Any:
        answer = self.answers.get((name, rtype))
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise dns.resolver.NoAnswer()
        return answer


class MX:
    def __init__(self, pref: int, name: str) -> None:
        self.preference = pref
        self.exchange = type("N", (), {"to_text": lambda _s: name})()


class A:
    def __init__(self, address: str) -> None:
        self.address = address


def route(cfg: SmtpClientSettings, answers: dict[tuple[str, str], Any], domain: str) -> Any:
    router = Router(cfg, FakeResolver(answers))  # type: ignore[arg-type]
    try:
        return asyncio.run(router.route(domain))
    except RouteError as exc:
        return exc


def test_routing_order_transport_smarthost_mx() -> None:
    cfg = SmtpClientSettings(smarthost="relay.test:587", transport={"in.test": "10.1.1.1:25", "out.test": "mx"},
                             mx_port=2500)
    answers = {("out.test", "MX"): [MX(20, "b.out.test."), MX(10, "a.out.test.")],
               ("a.out.test", "A"): [A("127.0.0.10")], ("b.out.test", "A"): [A("127.0.0.20")],
               ("b.out.test", "AAAA"): [A("::1")]}
    assert route(cfg, answers, "in.test").hosts == (Host("10.1.1.1", "10.1.1.1", 25),)
    assert route(cfg, answers, "else.test").hosts == (Host("relay.test", "relay.test", 587),)
    mx = route(cfg, answers, "OUT.test")
    assert [h.label for h in mx.hosts] == ["a.out.test[127.0.0.10]:2500", "b.out.test[127.0.0.20]:2500",
                                           "b.out.test[[::1]]:2500"]
    assert mx.limit_key == "out.test"


def test_mx_failures_are_permanent_or_temporary_as_a_mail_admin_expects() -> None:
    cfg = SmtpClientSettings(smarthost="")
    nx = route(cfg, {("gone.test", "MX"): dns.resolver.NXDOMAIN()}, "gone.test")
    assert isinstance(nx, RouteError) and nx.permanent and "5.1.2" in nx.text
    null = route(cfg, {("null.test", "MX"): [MX(0, ".")]}, "null.test")
    assert isinstance(null, RouteError) and null.code == 556
    servfail = route(cfg, {("sf.test", "MX"): dns.resolver.NoNameservers()}, "sf.test")
    assert isinstance(servfail, RouteError) and not servfail.permanent
    implicit = route(cfg, {("a.test", "A"): [A("127.0.0.3")]}, "a.test")
    assert [h.address for h in implicit.hosts] == ["127.0.0.3"]
    nothing = route(cfg, {}, "empty.test")
    assert isinstance(nothing, RouteError) and not nothing.permanent


def test_retry_schedule_and_lifetime() -> None:
    delays = [60.0, 600.0, 3600.0]
    assert [retry_topic(n) for n in (1, 2, 3, 7)] == ["mail.retry.1", "mail.retry.2", "mail.retry.3", "mail.retry.3"]
    assert [retry_delay_s(n, delays) for n in (1, 2, 3, 9)] == [60.0, 600.0, 3600.0, 3600.0]
    routed = sample_routed()
    assert not expired(routed, routed["received_time"] + 9_999, 10)
    assert expired(routed, routed["received_time"] + 10_000, 10)
    record = retry_record(routed, ["b@dest.test"], 2, 111, 222, "451 4.3.0 later", "n1", 333)
    assert record["rcpt_to"] == ["b@dest.test"] and record["attempt"] == 2 and record["due_time"] == 222
    assert default_codec().decode(default_codec().encode("MailRouted", record)).record["first_attempt_time"] == 111


def test_due_gate_releases_in_time_and_forgets_revoked() -> None:
    gate = DueGate()
    gate.hold(("t", 0), 5, 1000)
    gate.hold(("t", 1), 7, 2000)
    assert gate.release_due(999) == [] and gate.holds(("t", 0))
    assert gate.release_due(1500) == [("t", 0)]
    gate.forget({("t", 1)})
    assert gate.waiting == {}


def sample_routed() -> dict[str, Any]:
    return {"mail_id": "01M88ZC0VDYZENJZPTR25AAXZ0", "event_time": 1_700_000_000_000, "node": "n", "queue": "out",
            "reasons": [], "destination": "dest.test", "mail_from": "s@origin.test",
            "rcpt_to": ["a@dest.test", "b@dest.test"], "received_time": 1_700_000_000_000, "client_address": None,
            "size": 10, "message": {"compression": "NONE", "data": b"x"}}


def test_dsn_is_a_multipart_report_with_the_original_headers() -> None:
    original = b"From: s@origin.test\r\nSubject: caf\xc3\xa9\r\nMessage-ID: <1@o>\r\n\r\nsecret body\r\n"
    failed = {"a@dest.test": Reply(550, "5.1.1 no such user"), "b@dest.test": Reply(None, "4.4.7 too old")}
    dsn = build_dsn(sample_routed(), original, failed, "mx.dest.test[127.0.0.1]:25", "gw.test")
    msg = message_from_bytes(dsn, policy=policy.default)
    assert msg["To"] == "s@origin.test" and msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    _text, status, headers = msg.iter_parts()
    per_message, a, b = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; gw.test"
    assert (a["Final-Recipient"], a["Status"], a["Diagnostic-Code"]) == ("rfc822; a@dest.test", "5.1.1",
                                                                          "smtp; 550 5.1.1 no such user")
    assert b["Status"] == "4.4.7" and b["Action"] == "failed"
    assert "Subject: café" in headers.get_content() and b"secret body" not in dsn
    assert b"\r\n" in dsn and b"\n" not in dsn.replace(b"\r\n", b"")


def test_bounce_ids_are_stable_and_bounces_go_to_the_sender_with_null_sender() -> None:
    routed = sample_routed()
    one, two = bounce_mail_id(routed, ["a@dest.test"]), bounce_mail_id(routed, ["a@dest.test"])
    assert one == two != bounce_mail_id(routed, ["b@dest.test"])
    assert mail_id_time_ms(one) == routed["event_time"]
    record = bounce_record(routed, b"dsn bytes", one, "n1", 5)
    assert (record["mail_from"], record["rcpt_to"], record["destination"]) == ("", ["s@origin.test"], "origin.test")
    assert unpack_message(record["message"]) == b"dsn bytes"
    default_codec().encode("MailRouted", record)
    assert status_code(Reply(554, "rejected")) == "5.0.0" and status_code(Reply(None, "refused")) == "4.4.1"

"""The phase-2 decision without I/O: content rules (content.py), sender lists and the
CISS table (senders.py), the per-recipient verdict (policy.py) and how routing.decide
groups recipients, with settings per domain and per user (policy_settings.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import pack_message
from streams.validation.auth import AuthResults
from streams.validation.content import ContentRules, RuleHit
from streams.validation.dmarc import DmarcResult
from streams.validation.mime import walk_message
from streams.validation.policy import points, recipient_verdict
from streams.validation.policy_settings import ContentSettings, DecisionSettings
from streams.validation.routing import Findings, decide
from streams.validation.senders import ConfirmedSenders, listed


def rules(*specs: dict) -> ContentRules:
    return ContentRules(ContentSettings(rules=list(specs)))


def test_content_rules_on_subject_and_decoded_body() -> None:
    raw = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_und_Rolex?=\r\nContent-Type: text/html; charset=bogus\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + __import__("base64").b64encode(
               "<p>Bestellen Sie <b>jetzt</b> &amp; sparen Sie 90&#37;</p>".encode("cp1252")) + b"\r\n")
    walk = walk_message(raw)
    r = rules({"name": "rolex", "pattern": "rolex", "where": "subject", "score": 3},
              {"name": "jetzt", "pattern": "jetzt & sparen", "where": "body", "score": 2},
              {"name": "percent", "kind": "regex", "pattern": r"\d+\s*%", "score": 1.5},
              {"name": "rolex-body", "pattern": "rolex", "where": "body", "score": 9})
    assert r.check(raw, walk) == [RuleHit("rolex", 3, "subject", "Rolex"), RuleHit("jetzt", 2, "body", "jetzt & sparen"),
                                  RuleHit("percent", 1.5, "body", "90%")]


def test_a_bad_regex_is_refused_with_the_rule_name() -> None:
    with pytest.raises(ValidationError, match="content rule 'broken'"):
        ContentSettings(rules=[{"name": "broken", "kind": "regex", "pattern": "(unclosed", "score": 1}])


def test_sender_lists_and_the_ciss_table() -> None:
    assert listed("Alice@Mail.Partner.Test", ["partner.test"]) == "partner.test"
    assert listed("alice@partner.test", ["bob@partner.test"]) is None
    assert listed("bob@partner.test", ["bob@partner.test"]) == "bob@partner.test"
    assert listed("x@notpartner.test", ["partner.test"]) is None
    senders = ConfirmedSenders()
    senders.apply("friend@a.test", {"sender": "Friend@A.test", "expires_time": None})
    senders.apply("temp@a.test", {"sender": "temp@a.test", "expires_time": 1000})
    assert senders.confirmed("FRIEND@a.test") and senders.confirmed("temp@a.test", now_ms=999)
    assert not senders.confirmed("temp@a.test", now_ms=1000) and not senders.confirmed("other@a.test")
    senders.apply("friend@a.test", None)  # a tombstone withdraws it
    assert not senders.confirmed("friend@a.test")


DECISION = DecisionSettings(
    sender_deny=["pest.test"], sender_allow=["partner.test"],
    domains={"ciss.test": {"ciss": True, "spam_threshold": 3.0, "sender_allow": ["friends.test"]},
             "lax.test": {"dmarc_reject_action": "deliver"}},
    users={"boss@example.com": {"sender_allow": ["pest.test"], "sender_deny": ["partner.test"]}},
)


def auth(dmarc: str = "pass", policy: str = "reject", dkim: str = "pass", spf: str | None = None) -> AuthResults:
    from streams.validation.dkim_check import DkimResult

    return AuthResults((DkimResult(dkim, "from.test", "s", ""),), spf, "from.test",
                       DmarcResult(dmarc, "from.test", policy, "no aligned pass"),
                       reasons=(f"dkim={dkim}", f"dmarc={dmarc} (from.test)"))


@pytest.mark.parametrize("rcpt, sender, findings, queue, first_words", [
    ("bob@example.com", "x@pest.test", Findings(), "spam", "sender x@pest.test is on the domain's sender deny"),
    ("boss@example.com", "x@pest.test", Findings(), "out", "sender x@pest.test is on the recipient's sender allow"),
    ("boss@example.com", "y@partner.test", Findings(spam_verdict="ham"), "spam", "sender y@partner.test is on the rec"),
    ("bob@example.com", "y@partner.test", Findings(spam_verdict="spam", spam_score=1.0), "out", "sender y@partner"),
    ("bob@example.com", "y@partner.test", Findings(auth=auth("fail")), "quarantine", "DMARC: from.test fails under p=r"),
    ("bob@example.com", "y@x.test", Findings(auth=auth("fail", "quarantine")), "spam", "DMARC: from.test fails under p=q"),
    ("bob@lax.test", "y@x.test", Findings(auth=auth("fail")), "out", "spam points 2.0 of 5: dmarc=fail (p=reject) +2.0"),
    ("bob@example.com", "y@x.test", Findings(spam_verdict="spam", spam_score=0.5), "spam", "spam filter: spam (0.50)"),
    ("bob@example.com", "y@x.test", Findings(spam_verdict="unsure", spam_score=0.5, content_hits=(RuleHit("r", 2, "body", "m"),)),
     "spam", "spam: spam points 5.8 of 5: spam filter unsure (0.50) +3.9, rule r +2.0"),
    ("bob@example.com", "y@x.test", Findings(auth=auth("none", dkim="fail", spf="softfail")), "out",
     "spam points 1.5 of 5: dkim=fail +1.0, spf=softfail +0.5"),
    ("carol@ciss.test", "y@x.test", Findings(), "ciss", "CISS: sender y@x.test is not confirmed"),
    ("carol@ciss.test", "y@x.test", Findings(sender_confirmed=True), "out", "spam points 0.0 of 3"),
    ("carol@ciss.test", "y@friends.test", Findings(), "out", "sender y@friends.test is on the domain's sender allow"),
    ("carol@ciss.test", "", Findings(), "out", "spam points 0.0 of 3"),
    ("carol@ciss.test", "y@x.test", Findings(content_hits=(RuleHit("r", 3, "subject", "m"),)), "spam", "spam: spam p"),
])
def test_recipient_verdict_order(rcpt: str, sender: str, findings: Findings, queue: str, first_words: str) -> None:
    verdict = recipient_verdict(rcpt, rcpt.rpartition("@")[2], sender, findings, DECISION)
    assert verdict.queue == queue and verdict.reasons[0].startswith(first_words), verdict


def test_points_without_findings_are_zero() -> None:
    assert points(Findings(), DECISION.for_domain("example.com")) == (0.0, [])


def received(rcpts: list[str], sender: str = "y@x.test") -> dict:
    return {"mail_id": "01ID", "event_time": 1000, "node": "gw1", "origin": "SMTP", "client_address": "192.0.2.1",
            "client_helo": "h", "tls": None, "mail_from": sender, "rcpt_to": rcpts, "size": 4,
            "message": pack_message(b"body")}


def test_decide_splits_recipients_by_verdict_and_delivers_the_header() -> None:
    headed = pack_message(b"Authentication-Results: mx; dkim=pass\r\nbody")
    f = Findings(virus_scan="clean", decision=DECISION, auth=auth(), delivered_message=headed)
    routes = decide(received(["carol@ciss.test", "bob@example.com", "dave@ciss.test", "boss@example.com"]), "gw", f)
    assert [(r.queue, r.key, r.record["rcpt_to"]) for r in routes] == [
        ("ciss", b"01ID", ["carol@ciss.test", "dave@ciss.test"]),
        ("out", b"example.com", ["bob@example.com", "boss@example.com"])]
    assert all(r.record["message"] == headed for r in routes)
    out = routes[1].record["reasons"]
    assert out[0] == "virus scan: clean" and out[-1].startswith("dmarc=pass (from.test)")


def test_decide_keeps_the_mail_as_received_in_quarantine() -> None:
    f = Findings(decision=DECISION, delivered_message=pack_message(b"changed"))
    (route,) = decide(received(["bob@example.com"], sender="x@pest.test"), "gw", f)
    assert route.queue == "spam" and route.record["message"] == pack_message(b"body")


def test_domain_overrides_are_checked_when_loaded() -> None:
    with pytest.raises(ValidationError, match="validation.decision.domains.bad.test"):
        DecisionSettings(domains={"bad.test": {"dmarc_reject_action": "bounce"}})
    assert DECISION.for_domain("ciss.test").sender_allow == ["partner.test", "friends.test"]
    assert DECISION.for_domain("other.test").ciss is False and DECISION.ciss_anywhere

"""message-archive's rules and message-validation's archive copy, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from streams.archive.rules import NOT_ARCHIVED, choose, direction, spooled, verdict_of, why_not
from streams.archive.settings import ArchiveRule, ArchiveSettings
from streams.validation.findings import Findings
from streams.validation.routing import archive_copy, decide

OURS = ["example.com", "example.org"]


def received(mail_from: str = "x@outside.test", rcpt_to: list[str] | None = None) -> dict[str, Any]:
    return {"mail_id": "01M88VEJ91K48V10FW8NH70J07", "event_time": 1, "mail_from": mail_from,
            "rcpt_to": rcpt_to or ["bob@example.com"], "client_address": None, "size": 5,
            "message": {"compression": "NONE", "data": b"hello"}}


def copy(findings: Findings, **kw: Any) -> dict[str, Any]:
    mail = received(**kw)
    return archive_copy(mail, decide(mail, "n1", findings, now_ms=5), "n1", now_ms=5).record


@pytest.mark.parametrize(("sender", "rcpts", "way"), [
    ("x@outside.test", ["bob@example.com"], "inbound"),
    ("alice@example.com", ["x@outside.test"], "outbound"),
    ("alice@example.com", ["bob@EXAMPLE.org"], "internal"),
    ("x@outside.test", ["y@else.test"], "external"),
    ("", ["bob@example.com"], "inbound"),  # a bounce (null sender) to us
])
def test_direction(sender: str, rcpts: list[str], way: str) -> None:
    assert direction(sender, rcpts, OURS) == way


def test_validation_copies_every_mail_with_its_verdict_and_all_recipients() -> None:
    record = copy(Findings(spam_verdict="spam", spam_score=9.0), rcpt_to=["a@example.com", "b@example.org"])
    assert record["queue"] == "archive" and record["reasons"][0] == "verdict: spam"
    assert record["rcpt_to"] == ["a@example.com", "b@example.org"] and record["destination"] is None
    assert verdict_of(copy(Findings())["reasons"]) == "out"
    assert verdict_of(copy(Findings(virus_scan="infected", virus_detail="Eicar"))["reasons"]) == "virus"


def test_default_rule_archives_all_but_spam_and_virus() -> None:
    rules = ArchiveSettings().rules
    assert choose(rules, copy(Findings()), OURS)[0] is not None
    assert choose(rules, copy(Findings(spam_verdict="spam")), OURS)[0] is None
    assert choose(rules, copy(Findings(virus_scan="infected")), OURS)[0] is None
    assert choose(rules, copy(Findings(blocked_by_policy="exe")), OURS)[0] is not None  # quarantined: kept


def test_first_matching_rule_decides_by_domain_and_direction() -> None:
    rules = [ArchiveRule(name="skip-org", domains="example.org", archive=False),
             ArchiveRule(name="outbound-5y", directions="outbound", retention_days=1825),
             ArchiveRule(name="inbound", directions="inbound", exclude="")]
    out = copy(Findings(), mail_from="alice@example.com", rcpt_to=["x@outside.test"])
    rule, way = choose(rules, out, OURS)
    assert rule is not None and rule.name == "outbound-5y" and way == "outbound"
    assert spooled(out, rule, way, "n1", now_ms=9)["retention_days"] == 1825
    assert choose(rules, copy(Findings(), rcpt_to=["bob@example.org"]), OURS)[0] is None  # the exception rule
    spam_in = copy(Findings(spam_verdict="spam"))
    rule, way = choose(rules, spam_in, OURS)
    assert rule is not None and rule.name == "inbound"  # this rule excludes nothing
    assert choose(rules, copy(Findings(), mail_from="a@else.test", rcpt_to=["y@x.test"]), OURS)[0] is None


def test_why_a_mail_is_not_archived() -> None:
    rules = [ArchiveRule(name="skip-org", domains="example.org", archive=False),
             ArchiveRule(name="inbound", directions="inbound")]
    cases = {"exception": copy(Findings(), rcpt_to=["bob@example.org"]),
             "excluded": copy(Findings(spam_verdict="spam")),  # "inbound" fits, but excludes spam
             "no-rule": copy(Findings(), mail_from="alice@example.com", rcpt_to=["x@outside.test"])}
    for reason, mail in cases.items():
        assert choose(rules, mail, OURS)[0] is None
        assert why_not(rules, mail, OURS) == reason
    assert set(cases) == set(NOT_ARCHIVED)

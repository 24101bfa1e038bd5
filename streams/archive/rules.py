"""message-archive: the archive rules as pure functions (tested without Faust or Kafka).

A mail's direction comes from the gateway's own domains: inbound (a recipient is
ours, the sender is not), outbound (the sender is ours, no recipient is), internal
(both ours), external (neither: relayed). The first rule that matches decides;
a rule with ``archive = false`` is an exception that keeps the mail out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from streams.archive.settings import ArchiveRule

VERDICT_PREFIX = "verdict: "  # message-validation's archive copy names its queue in its first reason


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def direction(mail_from: str, rcpt_to: Iterable[str], ours: Iterable[str]) -> str:
    local = {d.lower() for d in ours}
    from_us = domain_of(mail_from) in local if mail_from else False
    to_us = any(domain_of(r) in local for r in rcpt_to)
    if from_us:
        return "internal" if to_us else "outbound"
    return "inbound" if to_us else "external"


def verdict_of(reasons: Sequence[str]) -> str:
    """The queue validation chose, as its archive copy says ("verdict: spam"); "out" when unsaid."""
    for reason in reasons[:1]:
        if reason.startswith(VERDICT_PREFIX):
            return reason[len(VERDICT_PREFIX):].strip()
    return "out"


def fits(rule: ArchiveRule, domains: set[str], way: str) -> bool:
    """The rule's directions and domains take the mail (its ``exclude`` aside)."""
    if way not in rule.directions:
        return False
    return not rule.domains or bool(domains & {d.lower() for d in rule.domains})


def matches(rule: ArchiveRule, domains: set[str], way: str, verdict: str) -> bool:
    return fits(rule, domains, way) and verdict not in rule.exclude


def _facts(mail: dict[str, Any], ours: Iterable[str]) -> tuple[str, set[str], str]:
    """A MailRouted record's direction, the domains of its addresses, and its verdict."""
    domains = {domain_of(a) for a in [mail["mail_from"], *mail["rcpt_to"]] if a}
    return direction(mail["mail_from"], mail["rcpt_to"], ours), domains, verdict_of(mail["reasons"])


def choose(rules: Sequence[ArchiveRule], mail: dict[str, Any], ours: Iterable[str]) -> tuple[ArchiveRule | None, str]:
    """The rule that archives a MailRouted record (None: not archived), and the mail's direction."""
    way, domains, verdict = _facts(mail, ours)
    for rule in rules:
        if matches(rule, domains, way, verdict):
            return (rule if rule.archive else None), way
    return None, way


# Why a mail is not archived: the label of the metric (few values) → the words of the log.
NOT_ARCHIVED = {"exception": "an exception rule (archive = false) matches",
                "excluded": "the rules that fit exclude its verdict",
                "no-rule": "no archive rule matches"}


def why_not(rules: Sequence[ArchiveRule], mail: dict[str, Any], ours: Iterable[str]) -> str:
    """Why ``choose`` archives a mail under no rule: a key of ``NOT_ARCHIVED``."""
    way, domains, verdict = _facts(mail, ours)
    if any(matches(rule, domains, way, verdict) for rule in rules):
        return "exception"  # the first that matched keeps it out
    return "excluded" if any(fits(rule, domains, way) for rule in rules) else "no-rule"


def spooled(mail: dict[str, Any], rule: ArchiveRule, way: str, node: str, now_ms: int | None = None) -> dict[str, Any]:
    """The ArchiveSpooled record for a mail a rule archives."""
    return {
        "mail_id": mail["mail_id"], "event_time": int(time.time() * 1000) if now_ms is None else now_ms,
        "node": node, "source": "pipeline", "rule": rule.name, "retention_days": rule.retention_days,
        "direction": way, "verdict": verdict_of(mail["reasons"]), "mail_from": mail["mail_from"],
        "rcpt_to": list(mail["rcpt_to"]), "received_time": mail["received_time"], "size": mail["size"],
        "origin": mail.get("client_address"), "message": mail["message"],
    }

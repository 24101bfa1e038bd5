"""The routing decision of message-validation, as a pure function.

Each mail goes to exactly one queue. The order of the verdicts is written here and
only here:

1. the mail cannot be taken apart            → mail.quarantine
2. the virus scan gave no answer (clamd down) → mail.quarantine, held ("never passed as clean")
3. a virus                                    → mail.virus
4. not fully scannable (limits, encryption)  → mail.quarantine
5. the attachment policy blocks it            → mail.quarantine
6. the spam filter's verdict is spam          → mail.spam
7. otherwise                                  → mail.out, one record per recipient domain
   (keyed by that domain, so that one smtp-client consumer owns a destination)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Route:
    queue: str  # out | spam | virus | ciss | archive | quarantine
    key: bytes
    record: dict[str, Any]  # a MailRouted record


@dataclass(frozen=True)
class Findings:
    """What the phase-2 checks found; every field a plain value, so decide() stays pure."""

    unparseable: str | None = None
    virus_scan: str = "off"  # off | clean | infected | unscannable | failed
    virus_detail: str = ""  # signature names, or why not scannable / why it failed
    blocked_by_policy: str | None = None
    spam_verdict: str | None = None  # spam | unsure | ham; None: not scored
    spam_score: float = 0.0
    spam_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def split_by_domain(recipients: list[str]) -> OrderedDict[str, list[str]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for rcpt in recipients:
        groups.setdefault(domain_of(rcpt), []).append(rcpt)
    return groups


def routed(mail: dict[str, Any], queue: str, reasons: list[str], node: str,
           destination: str | None, recipients: list[str], now_ms: int) -> dict[str, Any]:
    return {
        "mail_id": mail["mail_id"],
        "event_time": now_ms,
        "node": node,
        "queue": queue,
        "reasons": reasons,
        "destination": destination,
        "mail_from": mail["mail_from"],
        "rcpt_to": recipients,
        "received_time": mail["event_time"],
        "client_address": mail.get("client_address"),
        "size": mail["size"],
        "message": mail["message"],
    }


def _held(mail: dict[str, Any], queue: str, reason: str, node: str, now_ms: int) -> list[Route]:
    return [Route(queue, mail["mail_id"].encode(),
                  routed(mail, queue, [reason], node, None, list(mail["rcpt_to"]), now_ms))]


def decide(mail: dict[str, Any], node: str, findings: Findings | None = None,
           now_ms: int | None = None) -> list[Route]:
    """Routes for one MailReceived record and what the checks found about it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    f = findings or Findings()
    if not mail["rcpt_to"]:
        return _held(mail, "quarantine", "no recipients", node, now_ms)
    if f.unparseable:
        return _held(mail, "quarantine", f"unparseable: {f.unparseable}", node, now_ms)
    if f.virus_scan == "failed":
        return _held(mail, "quarantine", f"held: virus scan failed: {f.virus_detail}", node, now_ms)
    if f.virus_scan == "infected":
        return _held(mail, "virus", f"virus: {f.virus_detail}", node, now_ms)
    if f.virus_scan == "unscannable":
        return _held(mail, "quarantine", f"not fully scannable: {f.virus_detail}", node, now_ms)
    if f.blocked_by_policy:
        return _held(mail, "quarantine", f"attachment policy: {f.blocked_by_policy}", node, now_ms)
    spam = f"spam filter: {f.spam_verdict} ({f.spam_score:.2f})" + "".join(f"; {r}" for r in f.spam_reasons[:3])
    if f.spam_verdict == "spam":
        return _held(mail, "spam", spam, node, now_ms)
    reasons = [f"virus scan: {f.virus_scan}", "attachments: allowed", *f.notes]
    if f.spam_verdict is not None:
        reasons.append(spam)
    return [
        Route("out", domain.encode(), routed(mail, "out", reasons, node, domain, rcpts, now_ms))
        for domain, rcpts in split_by_domain(mail["rcpt_to"]).items()
    ]

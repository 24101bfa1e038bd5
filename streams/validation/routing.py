"""The routing decision of message-validation, as a pure function.

For now every mail goes to mail.out, split into one record per recipient domain
(keyed by that domain, so that one smtp-client consumer owns a destination).
Phase-2 filters will add the quarantine queues.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Route:
    queue: str  # out | spam | virus | ciss | archive | quarantine
    key: bytes
    record: dict[str, Any]  # a MailRouted record


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


def decide(mail: dict[str, Any], node: str, now_ms: int | None = None) -> list[Route]:
    """Routes for one MailReceived record."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not mail["rcpt_to"]:
        return [Route("quarantine", mail["mail_id"].encode(),
                      routed(mail, "quarantine", ["no recipients"], node, None, [], now_ms))]
    return [
        Route("out", domain.encode(),
              routed(mail, "out", ["no phase-2 filter objected"], node, domain, rcpts, now_ms))
        for domain, rcpts in split_by_domain(mail["rcpt_to"]).items()
    ]


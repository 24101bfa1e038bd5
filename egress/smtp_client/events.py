"""MailDelivered and DeliveryFailed records for one delivery attempt."""

from __future__ import annotations

import time
from typing import Any

from egress.smtp_client.delivery import NextHop, Outcome


def outcome_events(routed: dict[str, Any], outcome: Outcome, hop: NextHop, attempt: int,
                   node: str, now_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(event type, record) pairs: one MailDelivered for the accepted recipients, and
    one DeliveryFailed per distinct reply among the refused ones."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    base = {"mail_id": routed["mail_id"], "event_time": now_ms, "node": node,
            "destination": routed.get("destination") or "", "next_hop": hop.name, "attempt": attempt}
    events: list[tuple[str, dict[str, Any]]] = []
    if outcome.accepted:
        reply = outcome.accepted_reply
        events.append(("MailDelivered", {**base, "rcpt_to": outcome.accepted,
                                         "reply_code": reply.code if reply and reply.code else 250,
                                         "reply_text": reply.text if reply else ""}))
    by_reply: dict[Any, list[str]] = {}
    for rcpt, reply in outcome.failed.items():
        by_reply.setdefault(reply, []).append(rcpt)
    for reply, rcpts in by_reply.items():
        events.append(("DeliveryFailed", {**base, "rcpt_to": rcpts, "reply_code": reply.code,
                                          "reply_text": reply.text, "permanent": reply.permanent}))
    return events

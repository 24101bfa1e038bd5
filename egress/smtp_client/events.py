"""smtp-client: the MailDelivered and DeliveryFailed records of one delivery attempt.

Together they answer "what happened to mail X for recipient Y" from mail.delivery
alone: accepted (with the next hop, its reply, TLS version and cipher), deferred
(with the reply and when the next attempt is due), or failed for good (with the
reply and the mail id of the bounce sent to the sender).
"""

from __future__ import annotations

import time
from typing import Any

from egress.smtp_client.delivery import Outcome, Reply
from schemas.events import DeliveryFailed, MailDelivered


def _base(routed: dict[str, Any], outcome: Outcome, attempt: int, node: str, now_ms: int) -> dict[str, Any]:
    return {"mail_id": routed["mail_id"], "event_time": now_ms, "node": node,
            "destination": routed.get("destination") or "", "next_hop": outcome.next_hop, "attempt": attempt,
            "tls_version": outcome.tls.version if outcome.tls else None,
            "tls_cipher": outcome.tls.cipher if outcome.tls else None}


def delivered_event(routed: dict[str, Any], outcome: Outcome, attempt: int, node: str,
                    now_ms: int | None = None) -> MailDelivered:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    reply = outcome.accepted_reply
    return MailDelivered(**_base(routed, outcome, attempt, node, now_ms), rcpt_to=list(outcome.accepted),
                         reply_code=reply.code if reply and reply.code else 250, reply_text=reply.text if reply else "")


def failed_events(routed: dict[str, Any], outcome: Outcome, failed: dict[str, Reply], attempt: int, node: str,
                  *, permanent: bool, next_attempt_ms: int | None = None, bounce_mail_id: str | None = None,
                  now_ms: int | None = None) -> list[DeliveryFailed]:
    """One DeliveryFailed per distinct reply among ``failed``."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    by_reply: dict[Reply, list[str]] = {}
    for rcpt, reply in failed.items():
        by_reply.setdefault(reply, []).append(rcpt)
    return [DeliveryFailed(**_base(routed, outcome, attempt, node, now_ms), rcpt_to=rcpts, reply_code=reply.code,
                           reply_text=reply.text, permanent=permanent,
                           next_attempt_time=None if permanent else next_attempt_ms,
                           bounce_mail_id=bounce_mail_id if permanent else None)
            for reply, rcpts in by_reply.items()]


def outcome_events(routed: dict[str, Any], outcome: Outcome, hop: Any, attempt: int, node: str,
                   now_ms: int | None = None) -> list[MailDelivered | DeliveryFailed]:
    """Every event of one attempt, without retry or bounce details (release 0.1's interface;
    ``hop`` names the next hop when the outcome does not)."""
    if not outcome.next_hop and hop is not None:
        outcome.next_hop = hop.name
    events: list[MailDelivered | DeliveryFailed] = []
    if outcome.accepted:
        events.append(delivered_event(routed, outcome, attempt, node, now_ms))
    for permanent in (True, False):
        failed = {r: reply for r, reply in outcome.failed.items() if reply.permanent == permanent}
        events += failed_events(routed, outcome, failed, attempt, node, permanent=permanent, now_ms=now_ms)
    return events

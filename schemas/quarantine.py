"""The poison-message policy, decided once for every stage: a record that cannot
be read is kept whole on mail.quarantine as a MailRouted with the reason, and the
stage moves on (its partition is never blocked)."""

from __future__ import annotations

import time
from typing import Any

from schemas.ids import new_mail_id


def unreadable_record(mail_id: str | None, raw_record: bytes, reason: str, node: str,
                      stage: str, now_ms: int | None = None) -> dict[str, Any]:
    """A MailRouted for mail.quarantine that carries the unreadable record unchanged."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "mail_id": mail_id or new_mail_id(now_ms),
        "event_time": now_ms,
        "node": node,
        "queue": "quarantine",
        "reasons": [f"{stage}: unreadable event: {reason}"],
        "destination": None,
        "mail_from": "",
        "rcpt_to": [],
        "received_time": now_ms,
        "client_address": None,
        "size": len(raw_record),
        "message": {"compression": "NONE", "data": raw_record},
    }

"""Turning an accepted SMTP transaction into a MailReceived event."""

from __future__ import annotations

import time
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from schemas import new_mail_id, pack_message


def tls_description(session: Session) -> str | None:
    ssl = session.ssl
    if not ssl:
        return None
    cipher = ssl.get("cipher") if isinstance(ssl, dict) else None
    if cipher:
        name, version, _bits = cipher
        return f"{version} {name}"
    return "TLS"


def mail_received(envelope: Envelope, session: Session, node: str, mail_id: str | None = None) -> dict[str, Any]:
    raw: bytes = envelope.original_content or b""
    return {
        "mail_id": mail_id or new_mail_id(),
        "event_time": int(time.time() * 1000),
        "node": node,
        "origin": "SMTP",
        "client_address": session.peer[0] if isinstance(session.peer, tuple) else str(session.peer),
        "client_helo": session.host_name,
        "tls": tls_description(session),
        "mail_from": envelope.mail_from or "",
        "rcpt_to": list(envelope.rcpt_tos),
        "size": len(raw),
        "message": pack_message(raw),
    }

"""Turning a mail collected by pop3-proxy / pop3s-proxy into a MailReceived event."""

from __future__ import annotations

import re
import time
from typing import Any

from ingress.pop3.settings import Pop3Account
from schemas import pack_message

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RETURN_PATH = re.compile(rb"^return-path:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)
_HEADER_SCAN = 256 * 1024  # a header block past this is not searched for Return-Path


def return_path(raw: bytes) -> str:
    """The envelope sender the delivering server recorded: the first Return-Path
    header of the header block; "" for ``<>`` or when there is none."""
    head = raw[:_HEADER_SCAN]
    end = _HEADER_END.search(head)
    if end is not None:
        head = head[:end.start() + 1]
    m = _RETURN_PATH.search(head)
    if m is None:
        return ""
    value = re.sub(rb"\r?\n[ \t]", b" ", m[1]).strip()
    if b"<" in value:
        value = value[value.index(b"<") + 1:]
        value = value.split(b">", 1)[0]
    value = value.strip()
    if not value or any(c <= 0x20 or c == 0x7F for c in value):
        return ""
    return value[:998].decode("utf-8", "replace")


def mail_received(raw: bytes, account: Pop3Account, node: str, mail_id: str, tls: str | None) -> dict[str, Any]:
    """The MailReceived event of one collected mail. The account itself is not in
    the schema yet; ``client_address`` names the POP3 server."""
    return {
        "mail_id": mail_id,
        "event_time": int(time.time() * 1000),
        "node": node,
        "origin": "POP3",
        "client_address": account.host,
        "client_helo": None,
        "tls": tls,
        "mail_from": return_path(raw),
        "rcpt_to": [account.recipient],
        "size": len(raw),
        "message": pack_message(raw),
    }

"""Turning a mail collected by pop3-proxy / pop3s-proxy into a MailReceived event."""

from __future__ import annotations

import time
from typing import Any

from ingress.pop3.settings import Pop3Account
from schemas import pack_message

_HEADER_SCAN = 256 * 1024  # a header block past this is not searched for Return-Path
_NAME = b"return-path:"


def return_path(raw: bytes) -> str:
    """The envelope sender the delivering server recorded: the first Return-Path
    header of the header block; "" for ``<>`` or when there is none."""
    head = raw[:_HEADER_SCAN]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    if ends:
        head = head[:min(ends) + 1]
    low = head.lower()
    start = 0 if low.startswith(_NAME) else low.find(b"\n" + _NAME) + 1
    if start == 0 and not low.startswith(_NAME):
        return ""
    lines: list[bytes] = []
    for line in head[start + len(_NAME):].split(b"\n"):
        if lines and line[:1] not in (b" ", b"\t"):
            break  # the next header
        lines.append(line.rstrip(b"\r"))
    value = b" ".join(lines).strip()
    if b"<" in value:
        value = value[value.index(b"<") + 1:].split(b">", 1)[0].strip()
    if not value or any(c <= 0x20 or c == 0x7F for c in value):
        return ""
    return value[:998].decode("utf-8", "replace")


def mail_received(raw: bytes, account: Pop3Account, node: str, mail_id: str, tls: str | None) -> dict[str, Any]:
    """The MailReceived event of one collected mail: ``account`` names the account,
    ``client_address`` the POP3 server."""
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
        "account": account.name,
    }

"""Helpers for the spam-filter unit tests: the public corpus (read, never copied) and mail builders."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "spamassassin"


def corpus_dir(name: str) -> Path:
    folder = CORPUS / name
    if not folder.is_dir():
        pytest.skip(f"corpus folder {folder} is missing (the SpamAssassin public corpus, beside the project)")
    return folder


def plain_spams(limit: int) -> list[bytes]:
    """Single-part spams without a transfer encoding, long enough and with links: easy to mutate."""
    out = []
    for path in sorted(corpus_dir("spam").iterdir()):
        raw = path.read_bytes()
        head = raw.partition(b"\n\n")[0].lower()
        if b"multipart" in head or b"content-transfer-encoding" in head:
            continue
        body = raw.partition(b"\n\n")[2]
        if len(body.split()) >= 80 and b"http://" in body:
            out.append(raw)
        if len(out) == limit:
            break
    return out


def mutate(raw: bytes, name: str = "Mary Smith", salt: str = "x1") -> bytes:
    """The same spam sent again: new headers, a greeting by name, re-flowed whitespace,
    and tracking parameters on every link."""
    head, _, body = raw.partition(b"\n\n")
    head = re.sub(rb"(?im)^(message-id|date|to):.*$", lambda m: m.group(1) + f": <{salt}@x.test>".encode(), head)
    body = re.sub(rb"(http://[^\s\"'<>]+)", lambda m: m.group(1) + (b"&" if b"?" in m.group(1) else b"?")
                  + f"utm_source=list{salt}&utm_campaign=c{salt}&fbclid={salt}Zz9".encode(), body)
    body = body.replace(b" ", b"  ").replace(b"\n", b" \n")
    return head + b"\n\n" + f"Dear {name},\n\n".encode() + body


def mail(subject: str, body: str, sender: str = "news@shop.test", html: bool = False, extra: str = "") -> bytes:
    ctype = "text/html" if html else "text/plain"
    return (f"From: Shop <{sender}>\nTo: you@example.com\nSubject: {subject}\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n"
            f"Message-ID: <{abs(hash(body))}@shop.test>\nMIME-Version: 1.0\n{extra}"
            f"Content-Type: {ctype}; charset=utf-8\n\n{body}\n").encode()


def html_mail(html: str, subject: str = "hello", plain: str | None = None, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("sender", "Shop <offers@shop.test>")
    msg["To"] = "alice@example.com"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 04 Dec 2026 10:00:00 +0000"
    msg["Message-ID"] = "<1@shop.test>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if plain is None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(plain)
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()

"""message-validation: marking the mail the spam filter was unsure of, as it is delivered.

Mail between the spam filter's unsure and spam thresholds is delivered, not held
(holding it would hold ham), but **marked**, as SpamAssassin marks and REDDOXX's
"Mark" action does, so that a mail client rule can file it:

    X-Spam-Flag: YES
    X-Spam-Status: Unsure, score=0.634 reasons="rules: html_only +1.20, ..."

and, where a recipient domain sets ``spam_subject_tag`` (e.g. ``"[SPAM?]"``), the
Subject starts with the tag. Any X-Spam-Flag / X-Spam-Status the mail came with
is removed first: a sender must not mark its own mail as clean or as spam.
"""

from __future__ import annotations

import re

_CRLF = re.compile(rb"\r?\n")
OUR_FIELDS = (b"x-spam-flag", b"x-spam-status")
MAX_REASONS_CHARS = 600  # the header stays well under 998 octets a line once folded


def status_value(verdict: str, score: float, reasons: list[str]) -> str:
    """The X-Spam-Status value: the verdict, the score (0..1) and the spam filter's reasons."""
    said = "; ".join(reasons)[:MAX_REASONS_CHARS].replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'{verdict.capitalize()}, score={score:.3f} reasons="{said}"'


def marked(raw: bytes, status: str, subject_tag: str = "") -> bytes:
    """The mail with X-Spam-Flag and X-Spam-Status on top (theirs removed), and the Subject tagged."""
    sep = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw[: sep.start()], raw[sep.start():]) if sep else (raw, b"")
    eol = b"\r\n" if b"\r\n" in raw[:4096] or not raw else b"\n"
    kept: list[bytes] = []
    dropping = False
    tag = subject_tag.encode("utf-8")
    tagged = not tag
    for line in _CRLF.split(head) if head else []:
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above it
            if not dropping:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        dropping = bool(colon) and name.strip().lower() in OUR_FIELDS
        if dropping:
            continue
        if not tagged and colon and name.strip().lower() == b"subject":
            tagged = True
            if not value.strip().startswith(tag):
                line = name + b": " + tag + b" " + value.lstrip()
        kept.append(line)
    if not tagged:  # no Subject at all: one with the tag
        kept.append(b"Subject: " + tag)
    ours = [b"X-Spam-Flag: YES", b"X-Spam-Status: " + _fold(status, eol.decode()).encode("utf-8", "replace")]
    return eol.join(ours + kept) + body


def _fold(value: str, eol: str, width: int = 76) -> str:
    """Folded at spaces so that no line passes ``width`` (RFC 5322 §2.2.3)."""
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (eol + "\t").join(lines)

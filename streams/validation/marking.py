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

from streams.validation import header_block

OUR_FIELDS = (b"x-spam-flag", b"x-spam-status")
MAX_REASONS_CHARS = 600  # the header stays well under 998 octets a line once folded


def status_value(verdict: str, score: float, reasons: list[str]) -> str:
    """The X-Spam-Status value: the verdict, the score (0..1) and the spam filter's reasons."""
    said = "; ".join(reasons)[:MAX_REASONS_CHARS].replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'{verdict.capitalize()}, score={score:.3f} reasons="{said}"'


def marked(raw: bytes, status: str, subject_tag: str = "") -> bytes:
    """The mail with X-Spam-Flag and X-Spam-Status on top (theirs removed), and the Subject tagged."""
    lines, body, eol = header_block.split(raw)
    kept = header_block.without(lines, lambda name, _value: name in OUR_FIELDS)
    if subject_tag:
        _tag_subject(kept, subject_tag.encode("utf-8"))
    ours = [b"X-Spam-Flag: YES", b"X-Spam-Status: " + _fold(status, eol.decode()).encode("utf-8", "replace")]
    return eol.join(ours + kept) + body


def _tag_subject(lines: list[bytes], tag: bytes) -> None:
    """The first Subject field starts with ``tag`` (once); a mail without one gets a Subject of the tag."""
    for at, line in enumerate(lines):
        name, colon, value = line.partition(b":")
        if colon and line[:1] not in (b" ", b"\t") and name.strip().lower() == b"subject":
            if not value.strip().startswith(tag):
                lines[at] = name + b": " + tag + b" " + value.lstrip()
            return
    lines.append(b"Subject: " + tag)


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

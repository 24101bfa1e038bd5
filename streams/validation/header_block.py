"""message-validation: a mail's header block as lines, for the headers validation puts on the mail it
delivers (Authentication-Results, X-Spam-Flag / X-Spam-Status): fields removed with their continuation
lines, the body and the mail's own line ending kept as they are."""

from __future__ import annotations

import re
from collections.abc import Callable

_CRLF = re.compile(rb"\r?\n")


def split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header lines, the body with the blank line before it, the mail's line ending)."""
    sep = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw[: sep.start()], raw[sep.start():]) if sep else (raw, b"")
    eol = b"\r\n" if b"\r\n" in raw[:4096] or not raw else b"\n"
    return (_CRLF.split(head) if head else []), body, eol


def without(lines: list[bytes], drop: Callable[[bytes, bytes], bool]) -> list[bytes]:
    """The lines less every field for which ``drop(lower-cased name, value)`` is true, continuations included."""
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above it
            if not dropping:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        dropping = bool(colon) and drop(name.strip().lower(), value)
        if not dropping:
            kept.append(line)
    return kept

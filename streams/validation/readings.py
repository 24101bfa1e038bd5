"""message-validation: the other ways a mail reader may take a malformed mail apart.

    for label, text in structure_readings(raw, msg): ...   # msg: the stdlib parser's reading
    if damaged(msg): for block in carved_base64(raw): ...   # base64 blocks, wherever they stand

Readers disagree on damaged structure: which of two ``boundary`` parameters counts (the
first, the last, the RFC 2231 one), whether ``multipart/mixed/x`` or ``Multipart`` with a
boundary is a multipart, whether ``Content-Transfer-Encoding : base64`` (a blank before
the colon, RFC 5322's obsolete syntax) is a header. Each other reading is given as the
mail rewritten so the stdlib parser reads it that way; the walk scans every reading.
``carved_base64`` reads base64 blocks without the structure at all, across boundary
lines inside them (an outer boundary in an inner base64 part cuts it only for the
readers that honour it). Bounded: at most ``MAX_READINGS`` rewritten mails. The raw mail
is searched only when the parser's reading shows the trouble (a defect, an ambiguous
Content-Type): most mails cost a look at their parsed headers, nothing more.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from email.errors import MissingHeaderBodySeparatorDefect
from email.message import Message

MAX_READINGS = 8
_OBS_HEADER = re.compile(rb"^(content-[a-z0-9-]+|mime-version)[ \t]+:", re.IGNORECASE | re.MULTILINE)
_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_BOUNDARY = re.compile(rb'(?:^|;)\s*boundary(\*\d+)?(\*)?\s*=\s*("(?:[^"\\\r\n]|\\.)*"|[^;\s]*)', re.IGNORECASE)
_PLAIN_MULTIPART = re.compile(rb"\s*multipart/[a-z0-9!#$&^_.+-]+\s*(;|$)", re.IGNORECASE)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_B64_BLOCK = re.compile(rb"(?:^[A-Za-z0-9+/]{16,}=?=?[ \t]*\r?\n(?:--[^\r\n]*\r?\n)?)+", re.MULTILINE)
_BOUNDARY_LINE = re.compile(rb"^--[^\r\n]*", re.MULTILINE)
_MIN_BLOCK = 64


def structure_readings(raw: bytes, msg: Message) -> Iterator[tuple[str, bytes]]:
    """(what was read otherwise, the mail rewritten to be read so), at most MAX_READINGS;
    ``msg`` is the parser's reading of ``raw``."""
    count = 0
    parts = list(msg.walk())
    # A header line the parser did not take for one ends the headers of its part.
    if any(isinstance(d, MissingHeaderBodySeparatorDefect) for p in parts for d in p.defects) \
            and _OBS_HEADER.search(raw):
        count += 1
        yield "header names with a blank before the colon", _OBS_HEADER.sub(rb"\1:", raw)
    if not any(_ambiguous(str(p.get("content-type", "")).encode("utf-8", "surrogateescape"), raw) for p in parts):
        return
    for match in _CONTENT_TYPE.finditer(raw):
        value = _FOLD.sub(b"", match.group(1))
        candidates = boundary_candidates(value)
        if not _ambiguous(value, raw, candidates):
            continue
        for boundary in candidates:
            if count >= MAX_READINGS:
                return
            count += 1
            header = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"'
            label = f"boundary {boundary.decode('latin-1')!r} of {_shown(value)}"
            yield label, raw[:match.start()] + header + raw[match.end():]


def _ambiguous(value: bytes, raw: bytes, candidates: list[bytes] | None = None) -> bool:
    """Readers may split a part of this Content-Type otherwise than the parser: several
    boundaries, or one whose delimiter occurs although the type is no plain multipart."""
    if b"boundary" not in value.lower():
        return False
    candidates = boundary_candidates(value) if candidates is None else candidates
    odd = not _PLAIN_MULTIPART.match(value)
    return len(candidates) > 1 or odd and any(b"--" + c in raw for c in candidates)


def damaged(msg: Message) -> bool:
    """The parser found defects: the structure may hide base64 that no part holds whole."""
    return any(p.defects for p in msg.walk())


def boundary_candidates(value: bytes) -> list[bytes]:
    """Every boundary a reader may take from a Content-Type value: each plain parameter,
    and the RFC 2231 one (``boundary*=``, or ``boundary*0=``, ``boundary*1=`` joined)."""
    plain: list[bytes] = []
    sections: dict[int, bytes] = {}
    for match in _BOUNDARY.finditer(value):
        section, extended, text = match.groups()
        text = text[1:-1] if text.startswith(b'"') and text.endswith(b'"') and len(text) > 1 else text
        if extended:
            text = _rfc2231(text, first=section in (None, b"*0"))
        if section is None:
            plain.append(text)
        else:
            sections.setdefault(int(section[1:]), text)
    if sections:
        plain.append(b"".join(sections[k] for k in sorted(sections)))
    return [c for c in dict.fromkeys(plain) if c and b'"' not in c and len(c) <= 200]


def _rfc2231(text: bytes, first: bool) -> bytes:
    if first and text.count(b"'") >= 2:
        text = text.split(b"'", 2)[2]
    return urllib.parse.unquote_to_bytes(text)


def carved_base64(raw: bytes) -> Iterator[bytes]:
    """The text of each block of base64 lines in ``raw`` (lines of 16 or more characters of
    the alphabet), boundary lines inside a block dropped; blocks under 64 characters skipped."""
    for match in _B64_BLOCK.finditer(raw):
        block = _BOUNDARY_LINE.sub(b"", match.group(0))
        if len(block) >= _MIN_BLOCK:
            yield block


def _shown(value: bytes) -> str:
    return " ".join(value.decode("latin-1").split())[:80]

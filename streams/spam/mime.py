"""spam-filter: MIME structure, split fast into stdlib ``email.message.Message`` objects.

The stdlib parser (``email.parser``, either policy) is most of the cost of
scoring a mail, for two reasons measured on the corpus: it reads every line
through a pure-Python feed loop, and it compiles a new regular expression for
each multipart boundary (about 0.7 ms a multipart mail). Here the header block
is split into fields (continuation lines folded in, as the stdlib does) and a
multipart body is split at its delimiter lines with ``str.split``; each piece
becomes a stdlib ``Message`` (compat32), so Content-Type parameters, transfer
decoding and ``walk()`` are the stdlib's own. Limits are ours: header values are
cut at ``MAX_HEADER_CHARS`` (the stdlib's parameter parsing is quadratic in a
header's length, see spam_2/00471 of the corpus), nesting at ``MAX_DEPTH`` and
the count of parts at ``MAX_PARTS``. Oddities are recorded as the stdlib's
defect classes; nothing here raises on any input.
"""

from __future__ import annotations

import re
from email import errors, policy
from email.message import Message

MAX_HEADER_CHARS = 2048
MAX_DEPTH = 8
MAX_PARTS = 256
POLICY = policy.compat32
_HEADER_END_RE = re.compile(r"\r?\n\r?\n")
_FIELD_SPLIT_RE = re.compile(r"\r?\n(?![ \t])")  # a line break not followed by a continuation line
_FIELD_NAME_RE = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext


def parse(raw: bytes) -> Message:
    """A message tree for any bytes (8-bit bytes kept as surrogates, as the stdlib does)."""
    try:
        return _entity(raw.decode("ascii", "surrogateescape"), 0, [0])
    except Exception:  # noqa: BLE001 - a last resort: the bytes as one text body
        msg = Message(policy=POLICY)
        msg.set_payload(raw.decode("latin-1"))
        msg.defects.append(errors.MessageDefect("unparseable message"))
        return msg


def _split_head(text: str) -> tuple[str, str]:
    if text.startswith(("\n", "\r\n")):  # an entity without headers
        return "", text.split("\n", 1)[1]
    end = _HEADER_END_RE.search(text)
    return (text, "") if end is None else (text[: end.start()], text[end.end() :])


def _set_headers(msg: Message, head: str) -> None:
    for n, field in enumerate(_FIELD_SPLIT_RE.split(head)):
        name, colon, value = field.partition(":")
        if colon and _FIELD_NAME_RE.fullmatch(name):
            msg.set_raw(name, value.lstrip(" \t")[:MAX_HEADER_CHARS])
        elif field.strip() and not (n == 0 and field.startswith("From ")):  # an mbox From_ line is no defect
            msg.defects.append(errors.InvalidHeaderDefect(f"not a header field: {field[:40]!r}"))


def _entity(text: str, depth: int, count: list[int]) -> Message:
    head, body = _split_head(text)
    msg = Message(policy=POLICY)
    _set_headers(msg, head)
    count[0] += 1
    if depth < MAX_DEPTH and count[0] < MAX_PARTS:
        if msg.get_content_maintype() == "multipart":
            boundary = msg.get_boundary()
            parts = _split_parts(body, boundary, msg) if boundary else None
            if parts is not None:
                for part in parts:
                    if count[0] >= MAX_PARTS:
                        break
                    msg.attach(_entity(part, depth + 1, count))
                return msg
            if not boundary:
                msg.defects.append(errors.NoBoundaryInMultipartDefect())
        elif msg.get_content_type() == "message/rfc822":
            msg.attach(_entity(body, depth + 1, count))
            return msg
    msg.set_payload(body)
    return msg


def _split_parts(body: str, boundary: str, msg: Message) -> list[str] | None:
    """The parts between the delimiter lines of ``boundary``; None when there is none."""
    delimiter = "\n--" + boundary
    pieces = ("\n" + body).split(delimiter)
    if len(pieces) < 2:
        msg.defects.append(errors.StartBoundaryNotFoundDefect())
        return None
    parts: list[str] = []
    for piece in pieces[1:]:
        line, _, rest = piece.partition("\n")
        tail = line.rstrip("\r \t")
        if tail == "--":
            return parts
        if tail:  # "--boundary" began a longer line: content, not a delimiter
            if parts:
                parts[-1] += delimiter + piece
            continue
        parts.append(rest.removesuffix("\r"))
    if parts and parts[-1].endswith("\n"):
        parts[-1] = parts[-1][:-1]
    msg.defects.append(errors.CloseBoundaryNotFoundDefect())
    return parts

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

Two more costs are cut: the top-level ``Message`` holds only the Content-*
fields (the stdlib finds a field by lower-casing every name before it, and a
mail has 20-odd Received/X- lines), all fields being returned beside it; and
``content_type`` memoises the stdlib's answer per Content-Type value.
"""

from __future__ import annotations

import re
from email import errors, policy
from functools import lru_cache
from email.message import Message

from streams.spam.native import NATIVE as _native

MAX_HEADER_CHARS = 2048
MAX_DEPTH = 8
MAX_PARTS = 256
POLICY = policy.compat32
_FIELD_SPLIT_RE = re.compile(r"\r?\n(?![ \t])")  # a line break not followed by a continuation line
_FIELD_RE = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*")  # RFC 5322 ftext, then the colon


def parse(raw: bytes) -> tuple[Message, list[tuple[str, str]]]:
    """A message tree for any bytes (8-bit bytes kept as surrogates, as the stdlib does), and
    the top-level header fields as (name, raw value). The top-level ``Message`` holds only its
    ``Content-*`` fields: the stdlib finds a field by walking all of them, lower-casing each
    name, so the 20-odd Received/X- lines of a mail slowed every content-type lookup."""
    fields: list[tuple[str, str]] = []
    try:
        return _entity(raw.decode("ascii", "surrogateescape"), 0, [0], fields), fields
    except Exception:  # noqa: BLE001 - a last resort: the bytes as one text body
        msg = Message(policy=POLICY)
        msg.set_payload(raw.decode("latin-1"))
        msg.defects.append(errors.MessageDefect("unparseable message"))
        return msg, []


def content_type(msg: Message) -> tuple[str, str | None]:
    """(content type, charset) of a message or part, as the stdlib's ``get_content_type`` and
    ``get_content_charset`` say; memoised by the Content-Type value (few differ, and the stdlib
    parses parameters in Python)."""
    value = next((v for k, v in msg.raw_items() if k.lower() == "content-type"), None)
    return _content_type_of(value, msg.get_default_type())


@lru_cache(maxsize=2048)
def _content_type_of(value: str | None, default: str) -> tuple[str, str | None]:
    probe = Message(policy=POLICY)
    probe.set_default_type(default)
    if value is not None:
        probe.set_raw("Content-Type", value)
    return probe.get_content_type(), probe.get_content_charset()


def _split_head(text: str) -> tuple[str, str]:
    if text.startswith(("\n", "\r\n")):  # an entity without headers
        return "", text.split("\n", 1)[1]
    # the first empty line, as r"\r?\n\r?\n" finds it, with str.find (the regex steps through every character)
    # "\n\r\n" looked for only before the first "\n\n" (most mails have no \r: it would scan all the text)
    lf = text.find("\n\n")
    crlf = text.find("\n\r\n", 0, len(text) if lf < 0 else lf + 1)
    if lf < 0 and crlf < 0:
        return text, ""
    end = crlf if crlf >= 0 else lf
    start = end - 1 if end and text[end - 1] == "\r" else end
    return text[:start], text[end + (2 if text[end + 1] == "\n" else 3) :]


def _split_fields(head: str) -> list[str]:
    """``_FIELD_SPLIT_RE.split(head)``: the regex steps through every character, this through lines."""
    out: list[str] = []
    for line in head.split("\n"):
        if out and line and line[0] in " \t":  # a continuation line
            out[-1] += "\n" + line
            continue
        if out and out[-1][-1:] == "\r":  # the \r of a line break between fields is no part of either
            out[-1] = out[-1][:-1]
        out.append(line)
    return out


def _set_headers(msg: Message, head: str, fields: list[tuple[str, str]] | None) -> None:
    """The fields of ``head`` into ``msg``; with ``fields``, all go there and only Content-* into ``msg``."""
    if _native is not None and head.isascii():  # split in Rust (8-bit bytes, kept as surrogates, are not UTF-8)
        found, content, bad = _native.header_fields(head)
        if fields is None:
            content = found
        else:
            fields += found
        for name, value in content:
            msg.set_raw(name, value)
        for field in bad:
            msg.defects.append(errors.InvalidHeaderDefect(f"not a header field: {field[:40]!r}"))
        return
    _set_headers_py(msg, head, fields)


def _set_headers_py(msg: Message, head: str, fields: list[tuple[str, str]] | None) -> None:
    """``_set_headers`` in Python: the reference."""
    for n, field in enumerate(_split_fields(head)):
        if parsed := _FIELD_RE.match(field):  # name (RFC 5322 ftext) up to the first colon, blanks after it
            name, value = parsed[1], field[parsed.end() : parsed.end() + MAX_HEADER_CHARS]
            if fields is None:
                msg.set_raw(name, value)
                continue
            fields.append((name, value))
            if name[:8].lower() == "content-":
                msg.set_raw(name, value)
        elif field.strip() and not (n == 0 and field.startswith("From ")):  # an mbox From_ line is no defect
            msg.defects.append(errors.InvalidHeaderDefect(f"not a header field: {field[:40]!r}"))


def _entity(text: str, depth: int, count: list[int], fields: list[tuple[str, str]] | None = None) -> Message:
    head, body = _split_head(text)
    msg = Message(policy=POLICY)
    _set_headers(msg, head, fields)
    count[0] += 1
    if depth < MAX_DEPTH and count[0] < MAX_PARTS:
        ctype = content_type(msg)[0]
        if ctype.startswith("multipart/"):
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
        elif ctype == "message/rfc822":
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

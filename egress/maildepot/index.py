"""maildepot-archiver: what the search index keeps of a mail (sender, recipients, subject,
date and the text of the body), taken apart with the standard library's email parser.

The compat32 policy is used on purpose: the modern policy's header objects cost ~3 ms a
mail (measured with bench/archive_store.py), and the index needs only decoded text.
"""

from __future__ import annotations

import email
import html
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime

MAX_TEXT = 1024 * 1024  # characters of body text indexed per mail: a search index, not a copy
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)


@dataclass(frozen=True)
class Indexed:
    subject: str
    date_ms: int | None
    senders: str  # envelope sender and From/Sender/Reply-To headers
    recipients: str  # envelope recipients and To/Cc headers
    body: str


def _decoded(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # a broken encoded-word or unknown charset: keep the header as it is
        return str(value)


def _header(msg: Message, name: str) -> str:
    return " ".join(_decoded(v) for v in msg.get_all(name, []))


def _date_ms(msg: Message) -> int | None:
    try:
        value = msg["Date"]
        return int(parsedate_to_datetime(str(value)).timestamp() * 1000) if value else None
    except Exception:  # an unparseable Date header: the received time stands in
        return None


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        text = payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = payload.decode("utf-8", "replace")
    return html.unescape(_TAGS.sub(" ", text)) if part.get_content_subtype() == "html" else text


def body_text(msg: Message) -> str:
    """The text/plain and text/html parts that are not attachments, joined."""
    texts: list[str] = []
    size = 0
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
            texts.append(_part_text(part))
            size += len(texts[-1])
        if size > MAX_TEXT:
            break
    return "\n".join(texts)[:MAX_TEXT]


def index_entry(raw: bytes, mail_from: str, rcpt_to: list[str]) -> Indexed:
    msg = email.message_from_bytes(raw)
    senders = " ".join([mail_from, *(_header(msg, h) for h in ("From", "Sender", "Reply-To"))])
    recipients = " ".join([*rcpt_to, *(_header(msg, h) for h in ("To", "Cc"))])
    return Indexed(subject=_header(msg, "Subject"), date_ms=_date_ms(msg), senders=senders.strip(),
                   recipients=recipients.strip(), body=body_text(msg))

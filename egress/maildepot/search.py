"""maildepot-archiver: searching the archive (sender, recipient, subject, date, body text) with
SQLite FTS5, and exporting what was found as mbox or EML."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from egress.maildepot.store import ArchiveStore


@dataclass(frozen=True)
class Query:
    sender: str = ""
    recipient: str = ""
    subject: str = ""
    text: str = ""  # words in the subject or the body
    since_ms: int | None = None  # by the mail's Date (the received time when it has none)
    until_ms: int | None = None
    mail_ids: tuple[str, ...] = ()
    limit: int = 100
    offset: int = 0

    @property
    def empty(self) -> bool:
        return not (self.sender or self.recipient or self.subject or self.text or self.mail_ids
                    or self.since_ms is not None or self.until_ms is not None)


def phrases(text: str) -> str:
    """User words as FTS5 strings (each quoted, so no word is taken as query syntax)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


def match_expression(q: Query) -> str:
    parts = [f"{column} : ({phrases(value)})" for column, value in
             (("sender", q.sender), ("recipients", q.recipient), ("subject", q.subject)) if value.strip()]
    if q.text.strip():
        parts.append(f"{{subject body}} : ({phrases(q.text)})")
    return " AND ".join(parts)


def search(store: ArchiveStore, q: Query) -> list[dict[str, Any]]:
    where, args = [], []  # type: ignore[var-annotated]
    match = match_expression(q)
    if match:
        where.append("m.id IN (SELECT rowid FROM mail_text WHERE mail_text MATCH ?)")
        args.append(match)
    if q.since_ms is not None:
        where.append("m.date_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("m.date_ms < ?")
        args.append(q.until_ms)
    if q.mail_ids:
        where.append(f"m.mail_id IN ({','.join('?' * len(q.mail_ids))})")
        args.extend(q.mail_ids)
    sql = ("SELECT m.* FROM mails m" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY m.date_ms, m.id LIMIT ? OFFSET ?")
    rows = store.db.execute(sql, (*args, q.limit, q.offset)).fetchall()
    return [{**dict(r), "rcpt_to": json.loads(r["rcpt_to"])} for r in rows]


def mbox_entry(raw: bytes, sender: str, when_ms: int) -> bytes:
    """One message in mboxrd form: a From_ line, LF line ends, '>' before (>*)From_ lines."""
    stamp = time.asctime(time.gmtime(when_ms / 1000))
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    body = b"\n".join(b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in lines)
    return f"From {sender or 'MAILER-DAEMON'} {stamp}\n".encode() + body.rstrip(b"\n") + b"\n\n"


def export(store: ArchiveStore, q: Query, fmt: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(row, bytes) per mail found: an mbox entry (fmt "mbox") or the mail as it was (fmt "eml")."""
    if fmt not in ("mbox", "eml"):
        raise ValueError(f"export format {fmt!r}: use mbox or eml")
    for row in search(store, q):
        raw = store.raw(row["sha256"])
        yield row, (mbox_entry(raw, row["mail_from"], row["received_ms"]) if fmt == "mbox" else raw)


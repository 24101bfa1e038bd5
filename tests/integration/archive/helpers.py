"""Mails and ArchiveSpooled records for the archive tests."""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import UTC, datetime
from typing import Any

from schemas import new_mail_id, pack_message

DAY_MS = 86_400_000


def mail(n: int, sender: str = "alice@example.net", to: str = "bob@example.com", subject: str | None = None,
         body: str | None = None, when_ms: int = 1_790_000_000_000) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = subject or f"archive test {n}"
    msg["Date"] = format_datetime(datetime.fromtimestamp(when_ms / 1000, UTC))
    msg["Message-ID"] = f"<archive-{n}@example.net>"
    msg.set_content(body or f"body of mail number {n}, word{n}\nFrom the start of a line\n")
    return msg.as_bytes()


def spooled(n: int, raw: bytes | None = None, retention_days: int | None = None, received_ms: int = 1_790_000_000_000,
            mail_id: str | None = None) -> dict[str, Any]:
    raw = raw or mail(n, when_ms=received_ms)
    return {"mail_id": mail_id or new_mail_id(received_ms), "event_time": received_ms, "node": "n1",
            "source": "import", "rule": "test", "retention_days": retention_days, "direction": None,
            "verdict": None, "mail_from": "alice@example.net", "rcpt_to": ["bob@example.com"],
            "received_time": received_ms, "size": len(raw), "origin": None, "message": pack_message(raw)}


def joined(chunks: Iterable[Any]) -> dict[str, bytes]:
    """A streamed ExportArchive as mail id → the mail's bytes (its chunks joined, up to ``last``)."""
    mails: dict[str, bytes] = {}
    open_id = None
    for chunk in chunks:
        assert open_id in (None, chunk.mail_id), f"mail {open_id} ended without a last chunk"
        mails[chunk.mail_id] = mails.get(chunk.mail_id, b"") + chunk.data
        open_id = None if chunk.last else chunk.mail_id
    assert open_id is None, f"the stream ended inside mail {open_id}"
    return mails

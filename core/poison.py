"""The poison-message policy, decided once for every stage: a record that cannot be
read is kept whole on mail.quarantine as a MailRouted with the reason, and the
stage moves on — its partition is never blocked.

``Poison.read`` decodes with the stage's reader and, when that fails, quarantines
the record through the stage's ``Publisher`` and returns None. A stage that sends
its own way (a transaction, a synchronous producer) takes ``Poison.unreadable``,
the quarantine record, and sends it itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from core.logging import get_logger
from core.publish import Publisher
from schemas.events import MailRouted, RawMessage
from schemas.ids import new_mail_id

log = get_logger("poison")
T = TypeVar("T")
HeaderPairs = Iterable[tuple[str, Any]] | dict[str, Any] | None


def unreadable_record(mail_id: str | None, raw_record: bytes, reason: str, node: str,
                      stage: str, now_ms: int | None = None) -> MailRouted:
    """A MailRouted for mail.quarantine that carries the unreadable record unchanged."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return MailRouted(mail_id=mail_id or new_mail_id(now_ms), event_time=now_ms, node=node, queue="quarantine",
                      reasons=[f"{stage}: unreadable event: {reason}"], destination=None, mail_from="", rcpt_to=[],
                      received_time=now_ms, client_address=None, size=len(raw_record),
                      message=RawMessage(compression="NONE", data=raw_record))


def mail_id_of(key: bytes | str | None, headers: HeaderPairs = None) -> str | None:
    """The mail id a record names: its ``mail-id`` header, else its key; None when neither."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:
        if name == "mail-id" and value:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if isinstance(key, bytes):
        return key.decode(errors="replace") or None
    return key or None


class Poison:
    """One stage's poison policy: who quarantines (``stage`` on ``node``) and where to."""

    def __init__(self, stage: str, node: str, publisher: Publisher | None = None, topic: Any = None) -> None:
        self.stage, self.node = stage, node
        self.publisher, self.topic = publisher, topic  # where read() sends what it cannot read

    def unreadable(self, raw: bytes | None, error: BaseException | str, key: bytes | str | None = None,
                   headers: HeaderPairs = None, **where: Any) -> MailRouted:
        """The quarantine record of a record that could not be read, logged with the reason."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        record = unreadable_record(mail_id_of(key, headers), raw or b"", reason, self.node, self.stage)
        log.warning("quarantined unreadable record", mail_id=record.mail_id, stage=self.stage, reason=reason,
                    **where)
        return record

    async def read(self, decode: Callable[[bytes], T], raw: bytes | None, key: bytes | str | None = None,
                   headers: HeaderPairs = None, **where: Any) -> T | None:
        """``decode(raw)``, or None once the record is on mail.quarantine (acknowledged)."""
        try:
            return decode(raw or b"")
        except Exception as exc:  # DecodeError, a body that does not unpack, a field that is missing: poison
            assert self.publisher is not None, "Poison.read needs a publisher and a quarantine topic"
            await self.publisher.publish(self.topic, self.unreadable(raw, exc, key, headers, **where))
            return None
